"""First-order influence of a window on a loss: the alignment of their gradients.

One SGD step on window z moves a target loss L by about ``-lr * <grad l(z), grad L>``, so
``<grad l(z), grad L>`` (TracIn's first-order influence at one checkpoint, no Hessian) says how
much training on z helps L: large = helpful, negative = harmful. DIET scores

* new windows (hard next-item labels) against the loss on the selection half of the period that
  follows the stage (which windows help the next period most), and
* memory entries (their *stored* soft labels) against the loss of the new stage's windows (which
  entries now pull against what the new data teach: the stale ones). An entry whose stored labels
  equal the current model's predictions has a zero gradient: it teaches nothing new either way.

A window is scored as a whole: the influence of the *sum* of its positions' losses (its mean
loss's gradient times its number of trained positions), because one training step weighs every
position the same, so a window teaches in proportion to its positions. Scoring the per-window
mean instead ranks a one-position window like a twenty-position one, and a one-position window's
gradient is the noisiest: on amazon-games every one of the 20 windows DIET chose that way had a
single trained position (21 labelled positions, against 152 in the same-size reservoir).

Gradients are restricted to a small parameter subset (:func:`influence_parameters`) and taken
with the model in eval mode (no dropout), per sample with ``torch.func`` as the coresets do
(:mod:`recbole_foster.coreset.signals`); ``vmap`` cannot batch ``nn.GRU``, so the recurrent
families (GRU4Rec, NARM) take them one window at a time (``signals.looped_grads``, the same numbers).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from recbole_foster.coreset.selectors import influence_parameters as near_output_parameters
from recbole_foster.coreset.signals import _batches, _eval_mode, _flat, flat_grads, looped_grads, vmap_batches
from recbole_foster.diet.memory import trained_positions
from recbole_foster.model import students
from recbole_foster.model.text_item_embedding import TextItemEmbedding


def influence_parameters(model):
    """The item projection of a text model (``item_embedding.projection.weight``: it maps every
    item's text to the space items are scored in, and is small: hidden x text dim); otherwise
    DEALRec's weight near the encoder output (:func:`recbole_foster.coreset.selectors.influence_parameters`)."""
    if isinstance(getattr(model, "item_embedding", None), TextItemEmbedding):
        return ["item_embedding.projection.weight"]
    return near_output_parameters(model)


def _device(model):
    return next(model.parameters()).device


def _tensors(model, names):
    params = dict(model.named_parameters())
    return [params[n] for n in names]


def labelled_window_losses(model, seqs, target_log_probs):
    """(B,) per-window mean KL(stored label || model) over the positions a window trains on, the
    loss :class:`~recbole_foster.training_sets.TeacherLabelledSequences` trains with (its
    entropy term, constant in the model, left out). ``target_log_probs`` (B, L - 1, n_items)."""
    inputs = seqs[:, :-1]
    log_pred = F.log_softmax(students.scores(model, students.encode(model, inputs))[..., 1:], dim=-1)
    cross = -(target_log_probs[..., 1:].exp() * log_pred).sum(-1)  # (B, L - 1)
    mask = ((seqs[:, 1:] > 0) & (inputs > 0)).to(cross.dtype)
    return (cross * mask).sum(1) / mask.sum(1).clamp_min(1)


class _LabelledLoss(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, seqs, targets):
        return labelled_window_losses(self.model, seqs, targets)


def _per_sample_labelled_grads(model, seqs, targets, names):
    wrapper = _LabelledLoss(model)
    params = {f"model.{n}": p.detach() for n, p in model.named_parameters() if n in names}

    def one_loss(p, seq, target):
        return functional_call(wrapper, p, (seq.unsqueeze(0), target.unsqueeze(0)))[0]

    with torch.no_grad():
        grads = vmap(grad(one_loss), in_dims=(None, 0, 0))(params, seqs, targets)
    return {n: grads[f"model.{n}"] for n in names}


def _labelled_grads(model, seqs, targets, names):
    if vmap_batches(model):
        return _flat(_per_sample_labelled_grads(model, seqs, targets, names), names)
    return looped_grads(model, labelled_window_losses, names, seqs, targets)


def query_gradient(model, dataset, names, batch_size=256):
    """Flat gradient of the mean next-item cross-entropy of RecBole sample rows (``dataset``: each
    row a history and its target, scored as the evaluation ranks it: the state at the last item)."""
    feat, config = dataset.inter_feat, dataset.config
    hist = feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]]
    length = feat[config["ITEM_LIST_LENGTH_FIELD"]]
    target = feat[dataset.iid_field]
    tensors, device = _tensors(model, names), _device(model)
    total = [torch.zeros_like(t) for t in tensors]
    with _eval_mode(model):
        for start in range(0, len(target), batch_size):
            h = hist[start:start + batch_size].to(device)
            last = length[start:start + batch_size].to(device) - 1
            states = students.encode(model, h)[torch.arange(len(h), device=device), last]
            loss = F.cross_entropy(students.scores(model, states), target[start:start + batch_size].to(device),
                                   reduction="sum")
            total = [a + g for a, g in zip(total, torch.autograd.grad(loss, tensors))]
    return torch.cat([t.flatten() for t in total]) / max(1, len(target))


def window_scores(model, windows, direction, names, batch_size=64):
    """``(scores (n,), gradient)`` of hard windows: the gradient of each window's summed loss
    dotted with ``direction`` (flat), and the gradient of the windows' mean loss per position
    (what training on them lowers)."""
    scores, total, positions = [], None, 0
    with _eval_mode(model):
        for seqs in _batches(windows, batch_size, _device(model)):
            n = trained_positions(seqs).to(torch.float32)
            g = flat_grads(model, seqs, names) * n[:, None]  # mean-loss gradient -> summed-loss gradient
            scores.append((g @ direction).cpu())
            total = g.sum(0) if total is None else total + g.sum(0)
            positions += int(n.sum())
    if total is None:
        return torch.zeros(0), None
    return torch.cat(scores), total / max(1, positions)


def labelled_scores(model, windows, target_log_probs, direction, names, batch_size=16):
    """(m,) the gradient of each labelled window's summed loss (with its stored labels) dotted
    with ``direction``."""
    device, scores = _device(model), []
    with _eval_mode(model):
        for start in range(0, len(windows), batch_size):
            seqs = windows[start:start + batch_size].to(device)
            targets = target_log_probs[start:start + batch_size].to(device)
            g = _labelled_grads(model, seqs, targets, names) * trained_positions(seqs).to(torch.float32)[:, None]
            scores.append((g @ direction).cpu())
    return torch.cat(scores) if scores else torch.zeros(0)

