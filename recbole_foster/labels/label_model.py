"""``label_storage: label_model``: no label per position, but one tiny model g that labels every
window from its item ids and the dataset's frozen item text embeddings E (n_items x d).

g reads a window prefix as x = a weighted sum of the text embeddings of its last ``HISTORY``
items (``label_model_lags``), maps it to a code in text space, code = s x + (x D) U + b
(``label_model_scale`` s, the low-rank map ``label_model_down`` D (d x r) and ``label_model_up``
U (r x d), the bias b (d)), and labels the next item with softmax over items i of code . e_i.
Stored: those tensors in float16 and the label mask; the windows are the set's own item ids, so
a labelled window costs what a hard one costs, plus a few kB for g once.

Why this could pay: a text-based teacher's scores are already a softmax over a linear function
of the item texts (see :mod:`.text_code`), and its user state leans on the last items, so a
low-rank map from recent items' texts keeps much of the teacher's distribution for every window
at a fixed cost, where text codes and top-k pay per position. g is fitted by KL(teacher || g)
on the labelled positions (start: reduced-rank least squares of the teacher's centred
log-probabilities in text space; then seeded mini-batch Adam), optionally on more teacher-labelled
windows than the set stores (``label_model_fit_windows``).
"""

import math

import torch

from recbole_foster.labels.base import LabelStorage, window_label_mask

HISTORY = 3  # the last items of a prefix g reads
LAG_DECAY = 0.5  # their starting weights 1, 1/2, 1/4 (then fitted)
BATCH = 1024  # positions per Adam step and per chunk: memory stays (BATCH x n_items) on any catalog
LR = 0.005
KEYS = ("label_model_lags", "label_model_scale", "label_model_down", "label_model_up", "label_model_bias")


def prefix_items(sequences, mask):
    """(P, HISTORY) item ids of the last items of each labelled prefix, newest first, 0 where the
    window has none. Label index t (row-major over ``mask``) is read from the prefix up to t."""
    rows, ends = mask.nonzero(as_tuple=True)
    lags = torch.arange(HISTORY)
    where = ends[:, None] - lags[None, :]
    items = sequences[rows[:, None], where.clamp_min(0)].long()
    return torch.where(where >= 0, items, torch.zeros_like(items))


def _features(items, texts, lags):
    """(P, d): the lag-weighted sum of the text embeddings of ``items`` (P, HISTORY); 0 = none."""
    return ((texts[items] * (items > 0).unsqueeze(-1)) * lags[:, None]).sum(1)


def _scores(features, params, texts):
    """(P, n_items - 1) logits over items 1.. (the padding column left out)."""
    code = params["scale"] * features + (features @ params["down"]) @ params["up"] + params["bias"]
    return code @ texts[1:].T


def _least_squares_start(features, targets_of, texts, rank):
    """Scale, down, up, bias closest in least squares to the teacher's centred log-probs read as
    directions in text space (``text_code``'s start, for a map instead of free codes)."""
    pinv = torch.linalg.pinv(texts[1:])  # (d, n - 1); pinv, not lstsq: deterministic on CPU
    chunks = []
    for chunk in torch.arange(len(features)).split(BATCH):
        targets = targets_of(chunk)
        chunks.append((targets - targets.mean(1, keepdim=True)) @ pinv.T)
    directions = torch.cat(chunks)  # (P, d)
    x, y = features - features.mean(0), directions - directions.mean(0)
    scale = (x * y).sum() / (x * x).sum().clamp_min(1e-12)
    residual = y - scale * x
    solved = torch.linalg.pinv(x) @ residual  # (d, d)
    _, _, right = torch.linalg.svd(x @ solved, full_matrices=False)  # reduced-rank regression
    right = right[:rank]
    down, up = solved @ right.T, right
    bias = directions.mean(0) - scale * features.mean(0) - (features.mean(0) @ down) @ up
    return {"scale": scale.reshape(1), "down": down, "up": up, "bias": bias}


def fit_label_model(features_of, targets_of, n_positions, texts, rank, steps, seed=0):
    """g's parameters fitted by KL(teacher || g) over ``n_positions`` labelled positions;
    ``features_of(index, lags)`` and ``targets_of(index)`` read a batch of them."""
    lags = LAG_DECAY ** torch.arange(HISTORY, dtype=texts.dtype, device=texts.device)
    everything = torch.arange(n_positions, device=texts.device)
    params = _least_squares_start(features_of(everything, lags), targets_of, texts, rank)
    params["lags"] = lags
    for value in params.values():
        value.requires_grad_(True)
    optimiser = torch.optim.Adam(params.values(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randperm(n_positions, generator=generator)[:BATCH].to(texts.device)
        targets = targets_of(batch)
        log_pred = torch.log_softmax(_scores(features_of(batch, params["lags"]), params, texts), dim=-1)
        loss = (targets.exp() * (targets - log_pred)).sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {key: value.detach() for key, value in params.items()}


def decode_label_model(stored, sequences, mask, item_text):
    """(P, n_items) log-probs g gives the labelled positions of ``sequences`` (row-major over ``mask``)."""
    params = {key[len("label_model_"):]: stored[key].float() for key in KEYS}
    texts = item_text.float()
    items = prefix_items(sequences, mask)
    rows = []
    for chunk in items.split(BATCH):
        scores = torch.log_softmax(_scores(_features(chunk, texts, params["lags"]), params, texts), dim=-1)
        rows.append(torch.cat([torch.full_like(scores[:, :1], -math.inf), scores], dim=1))
    return torch.cat(rows) if rows else torch.zeros(0, len(texts))


class LabelModelStorage(LabelStorage):
    name = "label_model"
    needs_item_text = True
    needs_windows = True
    lossy = True
    summary = "one tiny model over the item text embeddings labels the windows from their item ids"

    def compress(self, log_probs, mask, k=None, item_text=None, sequences=None, rank=4, steps=300,
                 fit_sequences=None, fit_log_probs=None, device=None, seed=0, **options):
        """``sequences`` (m, L): the windows ``log_probs`` label (label t from the prefix up to t).
        ``fit_sequences`` / ``fit_log_probs``: more teacher-labelled windows g is fitted on as
        well (not stored). ``device``: where g is fitted."""
        if item_text is None:
            raise ValueError("label_storage=label_model needs the dataset's item text embeddings "
                             "(a text-based model, or a set that references them).")
        if sequences is None:
            raise ValueError("label_storage=label_model labels real windows from their item ids; "
                             "this set has none (use it with random_kd, a coreset or generate).")
        if not 1 <= int(rank) <= item_text.size(1):
            raise ValueError(f"label_model_rank must be between 1 and {item_text.size(1)}, got {rank}.")
        device = device or log_probs.device
        texts = item_text.float().to(device)
        parts = [(sequences, log_probs, mask)]
        if fit_sequences is not None:
            parts.append((fit_sequences, fit_log_probs, window_label_mask(fit_sequences)))
        items = torch.cat([prefix_items(s.cpu(), m.cpu()) for s, _, m in parts]).to(device)
        where = torch.cat([torch.stack([torch.full((int(m.sum()),), i), *m.cpu().nonzero(as_tuple=True)], 1)
                           for i, (_, _, m) in enumerate(parts)])

        def targets_of(index):
            index = index.cpu()
            rows = torch.empty(len(index), log_probs.size(-1))
            for i, (_, lp, _) in enumerate(parts):
                mine = where[index, 0] == i
                rows[mine] = lp[where[index[mine], 1], where[index[mine], 2]].float().cpu()
            return rows[:, 1:].to(device)

        params = fit_label_model(lambda index, lags: _features(items[index], texts, lags), targets_of,
                                 len(items), texts, int(rank), int(steps), seed)
        return {"label_mask": mask.cpu(), **{f"label_model_{key}": value.half().cpu() for key, value in params.items()}}

    def expand(self, stored, n_items, item_text=None, sequences=None):
        if item_text is None:
            raise ValueError("this set's labels come from a model over the item texts (label_storage=label_model): "
                             "it needs the dataset's item text embeddings to be read.")
        if sequences is None:
            raise ValueError("this set's labels come from a model over its windows (label_storage=label_model): "
                             "they are read with its windows.")
        mask = stored["label_mask"]
        full = torch.full(tuple(mask.shape) + (n_items,), -math.inf)
        full[..., 1:] = 0.0  # positions without a label: any distribution, never used
        full[mask] = decode_label_model(stored, sequences.cpu(), mask, item_text.cpu())
        return mask, full

    def owns(self, stored):
        return "label_model_down" in stored

    def run_options(self, config):
        return {"rank": config["label_model_rank"], "steps": config["label_model_steps"], "seed": config["seed"]}

    # g is read in text space: the sidecar holds its weights as they are, keyed by nothing
    def to_sidecar(self, labels):
        return {"k": None}, {key[len("label_"):]: labels[key].half() for key in KEYS}

    def from_sidecar(self, header, payload, order, ids, n_catalog):
        return {key: payload[key[len("label_"):]] for key in KEYS}
