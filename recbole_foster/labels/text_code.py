"""``label_storage: text_code``: per position a code c (r float16 numbers) and one shared decoder
D (r x d float16) such that the label is softmax over items i of c . D . e_i, with e_i the
dataset's frozen text embedding of item i (which a text-based set references anyway).

Why this is a good use of bytes: a text-based teacher's scores are h . (W e_i + b), i.e. the
label *is* a softmax over a linear function of the item texts, so a few numbers per position
keep the teacher's whole distribution over the catalog, where top-k keeps k items and flattens
the rest. The rank r is the largest whose bytes do not exceed those of top-``label_topk``
storage of the same positions (equal storage by construction), and the codes are fitted to the
teacher's labels by KL. A DIET memory written by several models keeps one decoder per writer
(``label_decoder`` (S, r, d) and each position's ``label_decoder_of``).
"""

import math

import torch

from recbole_foster.labels.base import LabelStorage
from recbole_foster.labels.topk import BYTES_PER_LABEL, check_k

CODE_FIT_STEPS = 300


def code_rank(n_positions, text_dim, k, n_decoders=1):
    """The largest code rank r whose codes (n_positions x r) and ``n_decoders`` decoders (r x
    text_dim), in float16, take no more bytes than top-k labels of the same positions; at least 1.
    With several decoders each position also names its decoder (one uint8), paid from the budget."""
    budget = n_positions * k * BYTES_PER_LABEL - (n_positions if n_decoders > 1 else 0)
    return max(1, budget // (2 * (n_positions + n_decoders * text_dim)))


def decode_text_code(codes, decoder, item_text, decoder_of=None):
    """(P, n_items) log-probs: log softmax over items 1.. of codes . decoder . item_text^T.

    ``decoder`` is (r, d), or (S, r, d) with ``decoder_of`` (P,) naming each position's decoder."""
    texts = item_text[1:].T
    if decoder.dim() == 2:
        logits = codes @ (decoder @ texts)
    else:
        logits = codes.new_empty(len(codes), texts.size(1))
        for s in range(len(decoder)):
            rows = decoder_of.long() == s
            logits[rows] = codes[rows] @ (decoder[s] @ texts)
    rows = torch.log_softmax(logits, dim=-1)
    return torch.cat([torch.full_like(rows[:, :1], -math.inf), rows], dim=1)


def fit_text_code(label_log_probs, item_text, rank, steps=CODE_FIT_STEPS):
    """Codes (P, rank) and decoder (rank, d) whose decoded labels are closest in KL to
    ``label_log_probs`` (P, n_items). Start: least squares of the centred log-probs on the text
    embeddings, truncated to ``rank`` by SVD (exact when the teacher's scores are linear in the
    texts with rank <= ``rank``); then Adam on the KL, which weighs the head of each distribution,
    where the ranking is."""
    targets = label_log_probs[:, 1:]
    texts = item_text[1:]
    if len(targets) == 0:  # no labelled position: nothing to fit
        return targets.new_zeros(0, rank), targets.new_zeros(rank, texts.size(1))
    centred = targets - targets.mean(dim=1, keepdim=True)
    # (P, d): centred ~ directions @ texts.T; pinv, not lstsq, whose default CPU driver is not
    # deterministic (a rerun of a set must give the same codes)
    directions = (torch.linalg.pinv(texts) @ centred.T).T
    left, singular, right = torch.linalg.svd(directions, full_matrices=False)
    rank = min(rank, len(singular))
    codes = (left[:, :rank] * singular[:rank]).clone().requires_grad_(True)
    decoder = right[:rank].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([codes, decoder], lr=0.01)
    probs = targets.exp()
    for _ in range(steps):
        optimiser.zero_grad()
        log_pred = torch.log_softmax(codes @ (decoder @ texts.T), dim=-1)  # rank x items first: cheap
        loss = (probs * (targets - log_pred)).sum(-1).mean()
        loss.backward()
        optimiser.step()
    return codes.detach(), decoder.detach()


class TextCodeStorage(LabelStorage):
    name = "text_code"
    needs_item_text = True
    lossy = True
    memory = True
    fixed_size = True  # its code rank is fitted to the bytes of a full memory of diet_memory_size
    shared_key = "label_decoder"  # several writers: label_decoder (S, r, d) and label_decoder_of
    summary = "a low-rank code per position over the item text embeddings, in the bytes of top-k"

    def compress(self, log_probs, mask, k=None, item_text=None, rank=None, device=None, **options):
        """``device``: where the codes are fitted (the run's device; default: where the labels are),
        since the labels are usually handed over on the CPU, where they are kept."""
        if rank is None:
            k = check_k(k, log_probs)
        if item_text is None:
            raise ValueError("label_storage=text_code needs the dataset's item text embeddings "
                             "(a text-based model, or a set that references them).")
        labels = log_probs[mask].float()
        if device is not None:
            labels = labels.to(device)
        rank = rank or code_rank(len(labels), item_text.size(1), k)
        codes, decoder = fit_text_code(labels, item_text.float().to(labels.device), rank)
        return {"label_mask": mask.cpu(), "label_codes": codes.half().cpu(), "label_decoder": decoder.half().cpu()}

    def expand_rows(self, stored, n_items, item_text=None):
        if item_text is None:
            raise ValueError("this set's labels are codes over the item texts (label_storage=text_code): "
                             "it needs the dataset's item text embeddings to be read.")
        return decode_text_code(stored["label_codes"].float(), stored["label_decoder"].float(), item_text.float(),
                                stored.get("label_decoder_of"))

    def owns(self, stored):
        return "label_codes" in stored

    def fit_options(self, n_positions, item_text, k, n_writers=1):
        return {"rank": code_rank(n_positions, item_text.size(1), k, n_decoders=n_writers)}

    def to_sidecar(self, labels):
        payload = {"codes": labels["label_codes"].half(), "decoder": labels["label_decoder"].half()}
        if "label_decoder_of" in labels:
            payload["decoder_of"] = labels["label_decoder_of"].to(torch.uint8)
        return {"k": None}, payload

    def from_sidecar(self, header, payload, order, ids, n_catalog):
        stored = {"label_codes": payload["codes"][order], "label_decoder": payload["decoder"]}
        if "decoder_of" in payload:
            stored["label_decoder_of"] = payload["decoder_of"][order]
        return stored
