"""How a RecBole sequential model learns from a small set: one interface over four model families.

A small set is a batch of windows (B, L): real item ids, or distributions over a subset of the
catalog (distilled sets). Training on it needs what RecBole's models compute inside ``forward``
but do not expose: hidden states from *given input embeddings* (so soft items can be fed), and
the state of every position, not only the last. This module builds them from the layers the
RecBole classes already own (no copy of a model; the text forms in :mod:`.text_models` only swap
the item embedding), per family:

* causal encoders, ``SASRec``, ``GRU4Rec``, ``NARM`` (and ``TextSASRec``, ``TextGRU4Rec``,
  ``TextNARM``): the state at position t predicts item t + 1 (SASRec's paper's loss at every
  position). For NARM, position t attends over positions 0..t, as its ``forward`` does at the last.
* bidirectional ``BERT4Rec`` (and ``TextBERT4Rec``): cloze, as BERT4Rec trains. Each position
  1..L-1 with a target is replaced by the mask token with probability ``mask_ratio`` (at least one
  per window) and predicted from both sides. Its evaluation puts the mask after the history, so
  the task it is scored on is next-item prediction.

A target of position t is "the item at t" in either family: the next item of position t - 1 for
a causal model, the masked item for BERT4Rec; so every training set (hard, teacher-labelled,
soft) states its targets once, for positions 1..L-1.
"""

import torch
import torch.nn.functional as F

from recbole_foster.compat import keep_anomaly_detection

with keep_anomaly_detection():  # RecBole's sequential models import SINE (see compat)
    from recbole.model.sequential_recommender.bert4rec import BERT4Rec
    from recbole.model.sequential_recommender.gru4rec import GRU4Rec
    from recbole.model.sequential_recommender.narm import NARM
    from recbole.model.sequential_recommender.sasrec import SASRec

FAMILIES = {"SASRec": SASRec, "GRU4Rec": GRU4Rec, "NARM": NARM, "BERT4Rec": BERT4Rec}
CAUSAL = ("SASRec", "GRU4Rec", "NARM")


class UnsupportedModel(ValueError):
    """The model is not one of the families a small set can train (see :data:`FAMILIES`)."""


def family(model_or_class):
    """The RecBole family (``FAMILIES`` key) a model or model class belongs to."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    for name, base in FAMILIES.items():
        if issubclass(cls, base):
            return name
    raise UnsupportedModel(
        f"{cls.__name__} cannot be trained on a small set: supported are RecBole's {', '.join(FAMILIES)} "
        "and their text forms (TextSASRec, TextGRU4Rec, TextNARM, TextBERT4Rec).")


def is_causal(model_or_class):
    return family(model_or_class) in CAUSAL


def _device(model):
    return next(model.parameters()).device


# ----- items -----
def item_vectors(model, item_ids=None):
    """Representations of ``item_ids`` (all real ids 0..n_items-1 when None), as the model scores them."""
    if item_ids is not None:
        return model.item_embedding(item_ids)
    weight = model.item_embedding.weight
    return weight[: model.n_items] if family(model) == "BERT4Rec" else weight  # BERT4Rec: drop the mask row


def embed(model, inputs, item_ids=None):
    """Input embeddings of ids (B, L), or of distributions (B, L, K) over the K items ``item_ids``
    (the probability-weighted mix of their representations; one-hot = the item itself)."""
    if item_ids is None:
        return model.item_embedding(inputs)
    return inputs @ item_vectors(model, item_ids)


def scores(model, hidden, item_ids=None):
    """Scores (..., K) of ``hidden`` (..., H) against ``item_ids`` (all items when None), as the
    model's ``full_sort_predict`` computes them (BERT4Rec adds its output bias)."""
    out = hidden @ item_vectors(model, item_ids).transpose(0, 1)
    if family(model) == "BERT4Rec":
        out = out + (model.output_bias if item_ids is None else model.output_bias[item_ids])
    return out


# ----- encoders: every position's hidden state from input embeddings -----
def encode_embeddings(model, item_emb, valid):
    """(B, L, H) hidden states of embedded windows; ``valid`` (B, L) marks real positions.

    The computation of the family's ``forward`` before it picks the last position (BERT4Rec: its
    whole output, which is bidirectional).
    """
    kind = family(model)
    if kind in ("SASRec", "BERT4Rec"):
        position_ids = torch.arange(item_emb.size(1), device=item_emb.device)
        input_emb = item_emb + model.position_embedding(position_ids).unsqueeze(0)
        input_emb = model.dropout(model.LayerNorm(input_emb))
        attention_mask = model.get_attention_mask(valid.long(), bidirectional=kind == "BERT4Rec")
        hidden = model.trm_encoder(input_emb, attention_mask, output_all_encoded_layers=True)[-1]
        if kind == "SASRec":
            return hidden
        return model.output_ln(model.output_gelu(model.output_ffn(hidden)))
    if kind == "GRU4Rec":
        return model.dense(model.gru_layers(model.emb_dropout(item_emb))[0])
    return _narm_every_position(model, item_emb, valid)


def _narm_every_position(model, item_emb, valid):
    """NARM's ``forward`` at every position t: global state h_t, local state attending over the
    real positions 0..t with NARM's own weights."""
    gru_out, _ = model.gru(model.emb_dropout(item_emb))  # (B, L, H)
    length = gru_out.size(1)
    causal = torch.ones(length, length, dtype=torch.bool, device=gru_out.device).tril()  # [t, j]: j <= t
    mask = (causal.unsqueeze(0) & valid.unsqueeze(1)).unsqueeze(-1)  # (B, L_t, L_j, 1)
    q1 = model.a_1(gru_out).unsqueeze(1)  # over j
    q2 = model.a_2(gru_out).unsqueeze(2)  # over t
    alpha = model.v_t(mask * torch.sigmoid(q1 + q2))  # (B, L_t, L_j, 1)
    c_local = (alpha * gru_out.unsqueeze(1)).sum(2)
    c_t = model.ct_dropout(torch.cat([c_local, gru_out], -1))
    return model.b(c_t)


def encode(model, item_seq):
    """(B, L, H) hidden states of id windows (0 = padding) for a causal model: position t has read 0..t."""
    if not is_causal(model):
        raise UnsupportedModel(f"{type(model).__name__} is bidirectional: it has no left-to-right state per position.")
    return encode_embeddings(model, embed(model, item_seq), item_seq > 0)


# ----- training on a small set -----
def target_hidden(model, inputs, item_ids=None, has_target=None):
    """Hidden states that predict positions 1..L-1 of windows ``inputs``, and which of them count.

    ``inputs``: ids (B, L) (``item_ids`` None) or distributions (B, L, K) over ``item_ids``.
    ``has_target`` (B, L - 1): positions 1..L-1 that have a label (default: every real position).
    Returns ``(hidden (B, L - 1, H), used (B, L - 1) bool)``; ``hidden[:, t - 1]`` is scored
    against position t's target wherever ``used``.
    """
    hard = item_ids is None
    if is_causal(model):
        prefix = inputs[:, :-1]  # sliced before embedding: bit for bit what encoding the prefix gives
        valid = prefix > 0 if hard else torch.ones(prefix.shape[:2], dtype=torch.bool, device=prefix.device)
        used = valid if has_target is None else valid & has_target
        return encode_embeddings(model, embed(model, prefix, item_ids), valid), used
    return _cloze_hidden(model, inputs, item_ids, has_target)


def _cloze_hidden(model, inputs, item_ids, has_target):
    """BERT4Rec's cloze task on a window: mask positions with a target, predict them from both sides."""
    hard = item_ids is None
    valid = inputs > 0 if hard else torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device)
    candidates = valid[:, 1:] if has_target is None else valid[:, 1:] & has_target
    masked = candidates & (torch.rand(candidates.shape, device=candidates.device) < model.mask_ratio)
    none = ~masked.any(1) & candidates.any(1)  # at least one masked position per window with targets
    if none.any():
        last = candidates.long().cumsum(1).argmax(1)  # the last position with a target
        masked[none, last[none]] = True
    item_emb = embed(model, inputs, item_ids)
    mask_token = model.item_embedding(torch.tensor([model.mask_token], device=item_emb.device))[0]
    positions = torch.cat([torch.zeros_like(masked[:, :1]), masked], 1).unsqueeze(-1)
    item_emb = torch.where(positions, mask_token, item_emb)
    return encode_embeddings(model, item_emb, valid)[:, 1:], masked


# ----- labels from a trained model (Random-KD, coreset labels) -----
@torch.no_grad()
def next_item_log_probs(model, item_seqs, batch_size=256):
    """(B, L - 1, n_items): the model's next-item distribution for positions 1..L-1 of id windows,
    each from the prefix before it (item 0, padding, gets probability 0). BERT4Rec reads the
    prefix followed by its mask token, as in its evaluation."""
    was_training = model.training
    model.eval()
    device, out = _device(model), []
    for start in range(0, len(item_seqs), batch_size):
        seqs = item_seqs[start:start + batch_size].to(device)
        if is_causal(model):
            logits = scores(model, encode(model, seqs[:, :-1]))
        else:
            logits = torch.stack([_masked_next(model, seqs[:, : t + 1]) for t in range(seqs.size(1) - 1)], 1)
        logits[..., 0] = float("-inf")
        out.append(F.log_softmax(logits, dim=-1).cpu())
    model.train(was_training)
    return torch.cat(out)


def _masked_next(model, prefix):
    """BERT4Rec's scores for the item after ``prefix`` (B, t): the prefix, then the mask token."""
    mask = torch.full_like(prefix[:, :1], model.mask_token)
    seqs = torch.cat([prefix, mask], 1)
    hidden = encode_embeddings(model, model.item_embedding(seqs), seqs > 0)[:, -1]
    return scores(model, hidden)
