"""Model-dependent signals the coreset methods rank training sequences by.

A "sample" is one real item-id sequence (right-padded with 0) and its loss is the one
:class:`~recbole_foster.training_sets.HardSequences` trains on, restricted to that sequence:
the mean next-item cross-entropy over its positions. Signals are computed with the model in eval
mode (no dropout), so they are deterministic; the model's mode is restored afterwards.

Per-sample gradients use ``torch.func`` (functional_call + vmap + grad): one vectorised pass per
batch, checked in the tests against a plain per-sequence backward loop.
"""

import contextlib
import ctypes
import ctypes.util
import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

from recbole_foster.model import students


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _device(model):
    return next(model.parameters()).device


def sequence_losses(model, seqs):
    """(B,) mean next-item cross-entropy of each sequence in ``seqs`` (B, L).

    The same positions as ``HardSequences.loss`` (input and target both real items), averaged per
    sequence instead of over the batch's positions; masked sums instead of boolean indexing keep it
    vmap-compatible. A sequence with no target (one item) has loss 0 and gradient 0.
    """
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    logits = students.scores(model, students.encode(model, inputs))  # (B, L-1, n_items)
    ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    mask = ((targets > 0) & (inputs > 0)).to(ce.dtype)
    return (ce * mask).sum(1) / mask.sum(1).clamp_min(1)


class _LossModule(nn.Module):
    """Puts :func:`sequence_losses` behind ``forward`` so ``functional_call`` can swap parameters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, seqs):
        return sequence_losses(self.model, seqs)


def _param_names(model, params):
    names = [n for n, p in model.named_parameters() if p.requires_grad] if params is None else list(params)
    known = dict(model.named_parameters())
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(f"unknown parameter names {missing}; the model has {sorted(known)}")
    return names


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def release_freed_memory():
    """Return heap memory freed by the last batch to the OS (glibc only; elsewhere a no-op).

    Per-sample gradients allocate many mid-sized tensors per batch; glibc keeps the freed chunks
    in its heap instead of returning them, and over the ~800 batches of DEALRec's effort pass on
    amazon-games the process grew to 19.6 GB resident and was OOM-killed while its live tensors
    stayed near 1 GB (``malloc_trim`` on the running process: 4.4 GB -> 1.0 GB). CUDA memory is
    PyTorch's own caching allocator and is not affected.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _batches(item_seqs, batch_size, device, desc=None):
    """Batches of ``item_seqs`` on ``device``; with ``desc``, a progress bar over them.

    Freed memory is handed back after every batch (:func:`release_freed_memory`): the passes over
    all training users are long, and without it their resident size only grows.
    """
    starts = range(0, item_seqs.size(0), batch_size)
    if desc is not None:
        starts = tqdm(starts, desc=desc, unit="batch", mininterval=5, leave=False)
    for start in starts:
        yield item_seqs[start:start + batch_size].to(device)
        release_freed_memory()


def _per_sample_grads(model, seqs, names):
    """{name: (B, *shape)} gradient of each sequence's own loss w.r.t. the named parameters."""
    wrapper = _LossModule(model)
    params = {f"model.{n}": p.detach() for n, p in model.named_parameters() if n in names}

    def one_loss(p, seq):
        return functional_call(wrapper, p, (seq.unsqueeze(0),))[0]

    with torch.no_grad():  # torch.func.grad still differentiates; other parameters stay untracked
        grads = vmap(grad(one_loss), in_dims=(None, 0))(params, seqs)
    return {n: grads[f"model.{n}"] for n in names}


def _flat(grads, names):
    return torch.cat([grads[n].flatten(1) for n in names], dim=1)


def vmap_batches(model):
    """Whether ``torch.func.vmap`` can batch the model's encoder: not ``nn.GRU`` (GRU4Rec, NARM)."""
    return students.family(model) not in ("GRU4Rec", "NARM")


def looped_grads(model, loss_fn, names, *batch):
    """(B, P) flat per-sample gradients by one backward pass per sample (``loss_fn(model, *rows)`` -> (1,)):
    the same numbers as the vectorised path, for models ``vmap`` cannot batch."""
    params = dict(model.named_parameters())
    tensors, out = [params[n] for n in names], []
    with torch.enable_grad():
        for i in range(len(batch[0])):
            loss = loss_fn(model, *(t[i:i + 1] for t in batch))[0]
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            out.append(torch.cat([(torch.zeros_like(t) if g is None else g).flatten() for g, t in zip(grads, tensors)]))
    return torch.stack(out)


def flat_grads(model, seqs, names):
    """(B, P) gradient of each sequence's own loss w.r.t. the named parameters, flattened."""
    if vmap_batches(model):
        return _flat(_per_sample_grads(model, seqs, names), names)
    return looped_grads(model, sequence_losses, names, seqs)


@torch.no_grad()
def last_hidden_states(model, item_seqs, batch_size=256):
    """(N, H) hidden state at each sequence's last real position (the user representation)."""
    out = []
    with _eval_mode(model):
        for seqs in _batches(item_seqs, batch_size, _device(model)):
            last = (seqs > 0).sum(1).clamp_min(1) - 1
            out.append(students.encode(model, seqs)[torch.arange(len(seqs), device=seqs.device), last].cpu())
    return torch.cat(out)


@torch.no_grad()
def per_sample_losses(model, item_seqs, batch_size=256):
    """(N,) each sequence's own loss (see :func:`sequence_losses`)."""
    with _eval_mode(model):
        batches = _batches(item_seqs, batch_size, _device(model))
        return torch.cat([sequence_losses(model, seqs).cpu() for seqs in batches])


def per_sample_grad_norms(model, item_seqs, params=None, batch_size=64):
    """(N,) L2 norm of the gradient of each sequence's own loss.

    ``params``: parameter names (``model.named_parameters()``) the gradient is taken over; None =
    every trainable parameter. DEALRec's effort score and GORACS's gradient term.
    """
    names = _param_names(model, params)
    with _eval_mode(model):
        return torch.cat([
            flat_grads(model, seqs, names).norm(dim=1).cpu()
            for seqs in _batches(item_seqs, batch_size, _device(model), desc="per-sample gradient norms")
        ])


def lissa_inverse_hvp(loss_fn, params, v, damping=0.01, scale=25.0, depth=1000, batch_sampler=None):
    """LiSSA estimate (Agarwal et al. 2017; Koh & Liang 2017) of ``(H + damping * scale * I)^-1 v``.

    Recursion h_0 = v, h_j = v + (1 - damping) h_{j-1} - H_j h_{j-1} / scale, returned as
    h_depth / scale, where H_j is the Hessian of ``loss_fn(batch_sampler())`` (``loss_fn(None)``
    without a sampler) w.r.t. ``params`` (list of tensors), applied by double backward. The fixed
    point is h = scale (H + damping*scale*I)^-1 v, so ``damping`` is a ridge of damping*scale on H;
    it converges when the eigenvalues of H/scale + damping lie in (0, 2). ``v``: list like ``params``.
    """
    v = [t.detach() for t in v]
    h = list(v)
    for _ in tqdm(range(depth), desc="LiSSA inverse-HVP", mininterval=5, leave=False):
        loss = loss_fn(batch_sampler() if batch_sampler is not None else None)
        first = torch.autograd.grad(loss, params, create_graph=True)
        hvp = torch.autograd.grad(first, params, grad_outputs=h)
        h = [vi + (1 - damping) * hi - hv.detach() / scale for vi, hi, hv in zip(v, h, hvp)]
    return [hi / scale for hi in h]


def influence_scores(model, item_seqs, params, depth=1000, damping=0.01, scale=25.0,
                     lissa_batch_size=1, batch_size=64, seed=0):
    """(N,) DEALRec influence <H^-1 v_bar, grad L(z_i)> restricted to the named ``params``.

    v_bar is the mean of the per-sequence gradients (each training sequence weighs the same);
    H^-1 v_bar is the LiSSA estimate with, at each step, the Hessian of the mean loss of
    ``lissa_batch_size`` distinct random sequences (seeded; DEALRec uses single samples; N gives
    the deterministic full-data Hessian). Two passes over the data keep memory at one batch of
    per-sample gradients.
    """
    names = _param_names(model, params)
    tensors = [dict(model.named_parameters())[n] for n in names]
    device = _device(model)
    generator = torch.Generator().manual_seed(seed)
    with _eval_mode(model):
        total = sum(flat_grads(model, seqs, names).sum(0)
                    for seqs in _batches(item_seqs, batch_size, device, desc="influence: mean gradient"))
        v_bar = torch.split(total / item_seqs.size(0), [t.numel() for t in tensors])
        v_bar = [g.view_as(t) for g, t in zip(v_bar, tensors)]

        def sample():
            return torch.randperm(item_seqs.size(0), generator=generator)[:lissa_batch_size]

        def batch_loss(rows):
            return sequence_losses(model, item_seqs[rows].to(device)).mean()

        h = lissa_inverse_hvp(batch_loss, tensors, v_bar, damping, scale, depth, sample)
        h = torch.cat([t.flatten() for t in h])
        return torch.cat([(flat_grads(model, seqs, names) @ h).cpu()
                          for seqs in _batches(item_seqs, batch_size, device, desc="influence: scores")])
