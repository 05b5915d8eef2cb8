"""Soft labels kept inside a saved set (``label_storage``), so the set trains a model on its own.

* ``teacher``: nothing is stored; the teacher (the full-data model) labels the set whenever a
  model is trained on it. The set is *teacher-assisted*: what a user keeps includes the teacher.
* ``dense``: every position's whole label distribution (float32 log-probabilities).
* ``topk``: per position the ``label_topk`` largest probabilities (float16) and their item ids
  (int32); the rest of the mass is spread evenly over the other items (FKD's marginal smoothing).
* ``text_code``: per position a code c (r float16 numbers) and one shared decoder D (r x d float16)
  such that the label is softmax over items i of c . D . e_i, with e_i the dataset's frozen text
  embedding of item i (which a text-based set references anyway). Why this is a good use of bytes:
  a text-based teacher's scores are h . (W e_i + b), i.e. the label *is* a softmax over a linear
  function of the item texts, so a few numbers per position keep the teacher's whole distribution
  over the catalog, where top-k keeps k items and flattens the rest. The rank r is the largest
  whose bytes do not exceed those of top-``label_topk`` storage of the same positions (equal
  storage by construction), and the codes are fitted to the teacher's labels by KL.

Labels are (m, n, n_items) log-distributions whose column 0 (padding) is -inf; ``mask`` (m, n)
marks the positions that have a label, and only those are stored.
"""

import math

import torch

STORAGES = ("teacher", "dense", "topk", "text_code")
TOPK_BYTES_PER_LABEL = 2 + 4  # float16 probability + int32 item id
CODE_FIT_STEPS = 300


def compress(log_probs, mask, storage, k=None, item_text=None):
    """The tensors that keep ``log_probs[mask]`` under ``storage`` (empty for ``teacher``);
    ``text_code`` needs the dataset's (n_items, d) ``item_text`` embeddings (row 0: padding)."""
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
    if storage == "text_code":
        if item_text is None:
            raise ValueError("label_storage=text_code needs the dataset's item text embeddings "
                             "(a text-based model, or a set that references them).")
        rank = code_rank(len(labels), item_text.size(1), k)
        codes, decoder = fit_text_code(labels, item_text.float().to(labels.device), rank)
        return {"label_mask": mask.cpu(), "label_codes": codes.half().cpu(), "label_decoder": decoder.half().cpu()}
    values, indices = labels.topk(k, dim=-1)
    return {"label_mask": mask.cpu(), "label_topk_probs": values.exp().half().cpu(),
            "label_topk_items": indices.int().cpu()}


def expand(stored, n_items, item_text=None):
    """``(mask, (m, n, n_items) log-probs)`` rebuilt from :func:`compress`'s tensors."""
    mask = stored["label_mask"]
    if "label_log_probs" in stored:
        rows = stored["label_log_probs"].float()
    elif "label_codes" in stored:
        if item_text is None:
            raise ValueError("this set's labels are codes over the item texts (label_storage=text_code): "
                             "it needs the dataset's item text embeddings to be read.")
        rows = decode_text_code(stored["label_codes"].float(), stored["label_decoder"].float(), item_text.float(),
                                stored.get("label_decoder_of"))
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


def label_kl(log_probs, kept_log_probs, mask):
    """Mean KL(label || kept label) per labelled position, in nats (0 = nothing lost), with
    ``kept_log_probs`` what :func:`expand` rebuilt. A diagnostic, not a predictor of training
    quality: on amazon-games, 5 windows, rank-2 text codes lose less KL than top-10 labels but
    train a worse model (docs/experiments.md)."""
    labels, kept = log_probs[mask][:, 1:], kept_log_probs.to(log_probs.device)[mask][:, 1:]
    if len(labels) == 0:
        return 0.0
    return (labels.exp() * (labels - kept)).sum(-1).mean().item()


def code_rank(n_positions, text_dim, k, n_decoders=1):
    """The largest code rank r whose codes (n_positions x r) and ``n_decoders`` decoders (r x
    text_dim), in float16, take no more bytes than top-k labels of the same positions; at least 1.
    With several decoders each position also names its decoder (one uint8), paid from the budget."""
    budget = n_positions * k * TOPK_BYTES_PER_LABEL - (n_positions if n_decoders > 1 else 0)
    return max(1, budget // (2 * (n_positions + n_decoders * text_dim)))


def decode_text_code(codes, decoder, item_text, decoder_of=None):
    """(P, n_items) log-probs: log softmax over items 1.. of codes . decoder . item_text^T.

    ``decoder`` is (r, d), or (S, r, d) with ``decoder_of`` (P,) naming each position's decoder
    (a memory written by several models: one decoder per writer)."""
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


def stored_bytes(stored):
    return sum(t.numel() * t.element_size() for t in stored.values())
