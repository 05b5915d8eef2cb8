"""``label_storage: topk``: per position the ``label_topk`` largest probabilities (float16) and
their item ids (int32); the rest of the mass is spread evenly over the other items (FKD's
marginal smoothing)."""

import math

import torch

from recbole_foster.labels.base import LabelStorage

BYTES_PER_LABEL = 2 + 4  # float16 probability + int32 item id


def check_k(k, log_probs):
    k = int(k)
    n_real = log_probs.size(-1) - 1
    if not 1 <= k < n_real:
        raise ValueError(f"label_topk must be between 1 and {n_real - 1} (the catalog's items), got {k}.")
    return k


class TopKStorage(LabelStorage):
    name = "topk"
    lossy = True
    memory = True
    refinable = True
    summary = "the label_topk largest probabilities per position, the rest spread evenly"

    def compress(self, log_probs, mask, k=None, item_text=None, **options):
        k = check_k(k, log_probs)
        values, indices = log_probs[mask].float().topk(k, dim=-1)
        return {"label_mask": mask.cpu(), "label_topk_probs": values.exp().half().cpu(),
                "label_topk_items": indices.int().cpu()}

    def expand_rows(self, stored, n_items, item_text=None):
        probs = stored["label_topk_probs"].float()
        items = stored["label_topk_items"].long()
        k = probs.size(-1)
        rest = (1.0 - probs.sum(-1, keepdim=True)).clamp_min(1e-12)
        rows = torch.log(rest / (n_items - 1 - k)).expand(len(probs), n_items).clone()
        rows.scatter_(1, items, torch.log(probs.clamp_min(1e-12)))
        rows[:, 0] = -math.inf
        return rows

    def owns(self, stored):
        return "label_topk_probs" in stored

    def to_sidecar(self, labels):
        return ({"k": int(labels["label_topk_items"].size(-1))},
                {"topk_items": (labels["label_topk_items"] - 1).int(), "topk_probs": labels["label_topk_probs"].half()})

    def from_sidecar(self, header, payload, order, ids, n_catalog):
        return {"label_topk_items": ids[payload["topk_items"].long()][order].int(),
                "label_topk_probs": payload["topk_probs"][order]}
