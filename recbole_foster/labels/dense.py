"""``label_storage: dense``: every labelled position's whole distribution (float32 log-probabilities)."""

from recbole_foster.labels.base import LabelStorage


class DenseStorage(LabelStorage):
    name = "dense"
    summary = "every position's whole label distribution (float32)"

    def compress(self, log_probs, mask, k=None, item_text=None, **options):
        return {"label_mask": mask.cpu(), "label_log_probs": log_probs[mask].float().cpu()}

    def expand_rows(self, stored, n_items, item_text=None):
        return stored["label_log_probs"].float()

    def owns(self, stored):
        return "label_log_probs" in stored

    def to_sidecar(self, labels):
        return {"k": None}, {"log_probs": labels["label_log_probs"][:, 1:].float()}

    def from_sidecar(self, header, payload, order, ids, n_catalog):
        import math

        import torch

        log_probs = torch.full((len(order), n_catalog + 1), -math.inf)
        log_probs[:, ids] = payload["log_probs"].float()
        return {"label_log_probs": log_probs[order]}
