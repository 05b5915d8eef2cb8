"""GORACS coreset selection (Mei et al., KDD 2025; ``codes/select/ITRA.py``).

The coreset S should look like the validation set: minimise the optimal-transport distance
OT(S, valid) with uniform marginals under a cost that is the (normalised) embedding distance
minus a bonus for training samples with large gradients. Stage 1 is a greedy facility-location
start, stage 2 swaps one member for one outsider while the exact OT distance (POT's network
simplex, ``ot.emd2``) goes down, trying first the swaps the OT dual potentials rate best.
"""

import math

import numpy as np
import ot
import torch
from tqdm import tqdm

from recbole_foster.coreset.dealrec import minmax


def goracs_cost(train_emb, valid_emb, grad_norm, lam, valid_subsample=None, seed=0):
    """(N, V) float64 cost C_ij = ||e_i - e_j|| / max ||.|| - lam * minmax(grad_norm)_i.

    ``train_emb`` (N, d), ``valid_emb`` (V, d), ``grad_norm`` (N,) per training sample. Each OT
    solve scales with V, so ``valid_subsample`` keeps that many validation rows, drawn uniformly
    without replacement with ``seed`` (kept in their original order); None keeps all.
    (GORACS's code divides the gradient norms by their max instead of min-max: the same up to
    a rescaling of ``lam`` and a constant, which OT with fixed marginals ignores. Its final
    min-max rescaling of C is affine and does not change the selection, so it is left out.)
    """
    valid_emb = valid_emb.detach().double()
    if valid_subsample is not None and valid_subsample < valid_emb.size(0):
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randperm(valid_emb.size(0), generator=generator)[:valid_subsample].sort().values
        valid_emb = valid_emb[rows]
    dist = torch.cdist(train_emb.detach().double(), valid_emb)
    if dist.max() > 0:
        dist = dist / dist.max()
    return dist - lam * minmax(grad_norm).unsqueeze(1)


def _numpy(cost):
    return torch.as_tensor(cost).detach().cpu().double().numpy()


def _solve(cost, rows):
    """Exact OT between uniform mass on ``rows`` of ``cost`` and uniform mass on its columns.

    Returns (distance, u, v): the dual potentials of the selected rows and of the columns.
    """
    sub = cost[np.asarray(rows)]
    a = np.full(sub.shape[0], 1.0 / sub.shape[0])
    b = np.full(sub.shape[1], 1.0 / sub.shape[1])
    value, log = ot.emd2(a, b, sub, numItermax=10_000_000, log=True)
    if log["warning"] is not None:
        raise RuntimeError(f"ot.emd2 did not reach the optimum: {log['warning']}")
    return float(value), log["u"], log["v"]


def ot_distance(cost, selected):
    """OT distance (``ot.emd2``, uniform marginals) between the ``selected`` rows and all columns."""
    return _solve(_numpy(cost), selected)[0]


def greedy_init(cost, n):
    """Indices (n,), in pick order: greedy minimisation of the facility-location objective.

    f(S) = sum_j min_{i in S} C_ij, the transport cost when every validation column goes to its
    cheapest selected row (OT with the coreset's marginal left free, as in GORACS's stage 1). The
    first pick is the row with the smallest sum; each next pick is the row whose addition gives the
    smallest f(S + {i}). Ties go to the lowest index; rows already chosen are never picked again.
    """
    cost = _numpy(cost)
    if not 0 < n <= cost.shape[0]:
        raise ValueError(f"greedy_init: cannot pick n={n} of {cost.shape[0]} training samples.")
    nearest = np.full(cost.shape[1], np.inf)
    chosen = []
    for _ in range(n):
        totals = np.minimum(cost, nearest).sum(1)
        totals[chosen] = np.inf
        chosen.append(int(totals.argmin()))
        nearest = np.minimum(nearest, cost[chosen[-1]])
    return torch.tensor(chosen, dtype=torch.long)


def swap_refine(cost, selected, max_swaps=100, n_candidates=10):
    """Improve ``selected`` by 1-for-1 swaps; returns (indices ascending, accepted OT distances).

    The distances list starts with the initial distance and gains one entry per accepted swap,
    each strictly lower than the last: a swap is kept only if the exact OT distance drops.

    Candidate ranking (a first-order estimate from the current dual potentials u (rows of S),
    v (columns)). Removing member i frees its mass 1/k, worth its potential u_i. An outsider o would
    carry mass 1/k to about R = ceil(V/k) columns, so its price is the mean of its R smallest
    reduced costs C_oj - v_j. The estimated change of a swap is (price_o - u_i)/k. Each round
    takes the ``n_candidates`` members with the largest u and outsiders with the smallest price,
    and solves the exact OT for their pairs in order of estimated change, keeping the first that
    lowers the distance (GORACS likewise takes the first improving pair). It stops after a round
    without improvement or after ``max_swaps`` accepted swaps.
    """
    cost = _numpy(cost)
    members = np.array(selected, dtype=np.int64)
    k, n_valid = len(members), cost.shape[1]
    reach = math.ceil(n_valid / k)
    value, u, v = _solve(cost, members)
    history = [value]
    progress = tqdm(total=max_swaps, desc="GORACS swaps", mininterval=5, leave=False)
    while len(history) <= max_swaps:
        outside = np.setdiff1d(np.arange(cost.shape[0]), members)
        if outside.size == 0:
            break
        price = np.partition(cost[outside] - v, reach - 1, axis=1)[:, :reach].mean(1)
        incoming = np.argsort(price, kind="stable")[:n_candidates]
        outgoing = np.argsort(-u, kind="stable")[:n_candidates]
        estimate = price[incoming][None, :] - u[outgoing][:, None]
        for flat in np.argsort(estimate, axis=None, kind="stable"):
            pos, o = outgoing[flat // len(incoming)], outside[incoming[flat % len(incoming)]]
            trial = members.copy()
            trial[pos] = o
            trial_value, trial_u, trial_v = _solve(cost, trial)
            if trial_value < value - 1e-12:
                members, value, u, v = trial, trial_value, trial_u, trial_v
                history.append(value)
                progress.update(1)
                progress.set_postfix(ot=f"{value:.4f}")
                break
        else:
            break
    progress.close()
    return torch.from_numpy(np.sort(members)), history


def goracs_select(cost, n, max_swaps=100, n_candidates=10):
    """Indices (n,), ascending, of the GORACS coreset for the (N, V) ``cost`` (:func:`goracs_cost`).

    Deterministic given the cost (seeded randomness lives in ``goracs_cost``'s subsampling).
    """
    return swap_refine(cost, greedy_init(cost, n).tolist(), max_swaps, n_candidates)[0]
