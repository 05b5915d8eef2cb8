"""Coreset baselines: pick real training sequences instead of synthesising them.

K-Center covers the user-representation space, DEALRec samples influence/effort score strata,
GORACS matches the validation set in optimal-transport distance. The selection functions are
model-agnostic (features, scores or a cost matrix in, indices out); ``signals`` computes those
inputs from a TextSASRec.
"""

from recbole_foster.coreset.dealrec import dealrec_select
from recbole_foster.coreset.goracs import goracs_cost, goracs_select, ot_distance
from recbole_foster.coreset.kcenter import greedy_k_center
from recbole_foster.coreset.signals import (
    influence_scores,
    last_hidden_states,
    lissa_inverse_hvp,
    per_sample_grad_norms,
    per_sample_losses,
)

__all__ = [
    "dealrec_select",
    "goracs_cost",
    "goracs_select",
    "greedy_k_center",
    "influence_scores",
    "last_hidden_states",
    "lissa_inverse_hvp",
    "ot_distance",
    "per_sample_grad_norms",
    "per_sample_losses",
]
