"""Soft labels kept inside a saved set (``label_storage``), so the set trains a model on its own.

* ``teacher``: nothing is stored; the teacher (the full-data model) labels the set whenever a
  model is trained on it. The set is *teacher-assisted*: what a user keeps includes the teacher.
* ``dense``: every position's whole label distribution (float32 log-probabilities).
* ``topk``: per position the ``label_topk`` largest probabilities (float16) and their item ids
  (int32); the rest of the mass is spread evenly over the other items (FKD's marginal smoothing).

Labels are (m, n, n_items) log-distributions whose column 0 (padding) is -inf; ``mask`` (m, n)
marks the positions that have a label, and only those are stored.
"""

import math

import torch

STORAGES = ("teacher", "dense", "topk")


def compress(log_probs, mask, storage, k=None):
    """The tensors that keep ``log_probs[mask]`` under ``storage`` (empty for ``teacher``)."""
    if storage not in STORAGES:
        raise ValueError(f"label_storage must be one of {STORAGES}, got {storage!r}.")
    if storage == "teacher":
        return {}
    labels = log_probs[mask].float()
    if storage == "dense":
        return {"label_mask": mask.cpu(), "label_log_probs": labels.cpu()}
    k = int(k)
    n_real = log_probs.size(-1) - 1
    if not 1 <= k < n_real:
        raise ValueError(f"label_topk must be between 1 and {n_real - 1} (the catalog's items), got {k}.")
    values, indices = labels.topk(k, dim=-1)
    return {"label_mask": mask.cpu(), "label_topk_probs": values.exp().half().cpu(),
            "label_topk_items": indices.int().cpu()}


def expand(stored, n_items):
    """``(mask, (m, n, n_items) log-probs)`` rebuilt from :func:`compress`'s tensors."""
    mask = stored["label_mask"]
    if "label_log_probs" in stored:
        rows = stored["label_log_probs"].float()
    else:
        probs = stored["label_topk_probs"].float()
        items = stored["label_topk_items"].long()
        k = probs.size(-1)
        rest = (1.0 - probs.sum(-1, keepdim=True)).clamp_min(1e-12)
        rows = torch.log(rest / (n_items - 1 - k)).expand(len(probs), n_items).clone()
        rows.scatter_(1, items, torch.log(probs.clamp_min(1e-12)))
        rows[:, 0] = -math.inf
    full = torch.full(tuple(mask.shape) + (n_items,), -math.inf)
    full[..., 1:] = 0.0  # positions without a label: any distribution, never used
    full[mask] = rows
    return mask, full


def stored_bytes(stored):
    return sum(t.numel() * t.element_size() for t in stored.values())
