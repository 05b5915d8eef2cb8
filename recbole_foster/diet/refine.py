"""Refining the memory's stored labels by gradient (``diet_refine_steps``): DIET's bilevel update of its entries.

Selection picks which real windows the memory keeps; refinement then changes what each entry
teaches. The outer variables are the stored top-k labels of every labelled position, as logits
over k + 1 buckets (the k stored items and the rest of the mass, which the top-k storage spreads
evenly over the other items). The inner problem is a model trained on the memory plus the new
stage: a fresh model (seeded) takes one AdamW step per refinement step on a batch of the memory
(its soft labels) plus a batch of the stage's training windows (their next items). The outer
loss is that model's next-item loss on another batch of the stage's **training** windows after a
look-ahead step ``w' = w - a g`` along the inner gradient ``g``; its gradient with respect to the
labels is first order (one unrolled step, as DARTS' approximation): ``-a d<g, v>/dlabels`` with
``v`` the outer gradient at ``w'``. Adam takes the steps on the label logits (``diet_refine_lr``).

Nothing here reads the selection or report half of any period: the function is given the
memory and the stage's training windows only. The refined labels are written back into the same
tensors (float16 probabilities of the same k items), so the refined memory takes the same bytes.
"""

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from recbole_foster.coreset.signals import _LossModule, sequence_losses
from recbole_foster.labels import get_storage
from recbole_foster.model import students


def memory_log_probs(model, windows, mask):
    """(P, n_items - 1) the model's next-item log-probabilities over the real items at every
    labelled position (``mask`` (m, L - 1), row-major order, as the memory's label tables)."""
    hidden = students.encode(model, windows[:, :-1])[mask]
    return F.log_softmax(students.scores(model, hidden)[:, 1:], dim=-1)


def soft_cross_entropy(log_q, items, probs, rest):
    """Mean over positions of ``-sum_i p_i log q_i`` for top-k labels: ``probs`` (P, k) on
    ``items`` (P, k; 0-based over the real items) and ``rest`` (P,) spread evenly over the others.
    Its gradient in the model equals that of the KL loss the memory trains with."""
    at = log_q.gather(1, items)
    others = log_q.sum(1) - at.sum(1)
    return -((probs * at).sum(1) + rest / (log_q.size(1) - items.size(1)) * others).mean()


def refine_labels(model, memory, windows, steps, lr, look_ahead, batch_size, generator, weight_decay=0.0,
                  desc="refine labels"):
    """``(memory, record)``: ``memory`` with its top-k label probabilities refined by ``steps``
    first-order bilevel steps (module docstring). ``model``: the fresh inner model (trained in place);
    ``windows``: the stage's training windows (the inner data and the outer loss), nothing else."""
    if not get_storage(memory.storage).refinable:
        raise ValueError(f"label refinement needs top-k labels, got {memory.storage!r}")
    device = students._device(model)
    mask = memory.label_mask
    probs = memory.labels["topk_probs"][mask].float()
    items = (memory.labels["topk_items"][mask].long() - 1).to(device)
    k = probs.size(1)
    rest = (1.0 - probs.sum(1, keepdim=True)).clamp_min(1e-6)
    theta = torch.log(torch.cat([probs.clamp_min(1e-6), rest], 1)).to(device).requires_grad_()
    index = torch.full(mask.shape, -1, dtype=torch.long)
    index[mask] = torch.arange(int(mask.sum()))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    label_opt = torch.optim.Adam([theta], lr=lr)
    model_opt = torch.optim.AdamW(params, lr=look_ahead, weight_decay=weight_decay)
    loss_module = _LossModule(model)
    windows = windows.long()
    n_mem, n_new = len(memory), len(windows)
    outer_losses = []
    for _ in tqdm(range(steps), desc=desc, leave=False, mininterval=2):
        mem_rows = torch.randperm(n_mem, generator=generator)[:batch_size]
        new_rows = torch.randperm(n_new, generator=generator)[:batch_size]
        out_rows = torch.randperm(n_new, generator=generator)[:batch_size]
        rows_mask = mask[mem_rows]
        positions = index[mem_rows][rows_mask].to(device)
        # inner: the model's loss on memory + new stage; its gradient depends on the labels
        model.train()
        split = theta.softmax(-1)
        log_q = memory_log_probs(model, memory.windows[mem_rows].to(device), rows_mask.to(device))
        memory_loss = soft_cross_entropy(log_q, items[positions], split[positions, :k], split[positions, k])
        inner = sequence_losses(model, windows[new_rows].to(device)).mean() + memory_loss
        grads = torch.autograd.grad(inner, params, create_graph=True)
        # outer: the training loss after a look-ahead step along the inner gradient
        model.eval()
        ahead = {f"model.{n}": (p.detach() - look_ahead * g.detach()).requires_grad_()
                 for n, p, g in zip(names, params, grads)}
        outer = functional_call(loss_module, ahead, (windows[out_rows].to(device),)).mean()
        outer_grads = torch.autograd.grad(outer, list(ahead.values()))
        alignment = sum((g * v).sum() for g, v in zip(grads, outer_grads))
        label_opt.zero_grad()
        theta.grad = -look_ahead * torch.autograd.grad(alignment, theta)[0]  # d outer(w') / d labels
        label_opt.step()
        for p, g in zip(params, grads):  # the inner model's own step (labels held fixed)
            p.grad = g.detach()
        model_opt.step()
        model_opt.zero_grad()
        outer_losses.append(float(outer.detach()))
    refined = theta.detach().softmax(-1)[:, :k].cpu()
    labels = dict(memory.labels)
    table = torch.zeros_like(memory.labels["topk_probs"])
    table[mask] = refined.to(table.dtype)
    labels["topk_probs"] = table
    new = memory.with_labels(labels)
    change = (refined - probs).abs().sum(1)
    record = {"steps": steps, "positions": int(mask.sum()),
              "mean_abs_change": float(change.mean()) if len(change) else 0.0,
              "outer_loss_first": outer_losses[0] if outer_losses else None,
              "outer_loss_last": outer_losses[-1] if outer_losses else None}
    return new, record
