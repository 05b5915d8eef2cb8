"""TD3's bi-level distillation with RaT-BPTT (Zhang et al., WWW 2025): FOSTER with first-order off.

Each outer step takes a random number (0..``td3_max_skip``) of plain SGD steps of the learner on
the synthetic data with nothing recorded, then ``td3_window`` SGD steps whose graph is kept, and
back-propagates the real-data loss f through that window to the synthetic factors. That is a
second-order gradient through an unrolled window, computed with PyTorch's own autograd and
``torch.func.functional_call``; it is what FOSTER's first-order BOME update replaces.

:class:`TD3Solver` is a solver of :class:`recbole_foster.distill.loop.DistillationLoop`, which it
shares with FOSTER's :class:`~recbole_foster.distill.bome.BomeSolver` so that the two differ only in
the bilevel solver: the same synthetic summary, the same f (BCE + feature matching; DH only when
``td3_dh_weight`` > 0, as TD3 has none), the same reset schedule (the learner carries on from the
end of its window and is reset every R steps), and items either a fresh subset per step
(``td3_items: sampled``) or the whole catalog (``td3_items: all``, TD3 as published).
"""

import torch
from torch import nn
from torch.func import functional_call

from recbole_foster.distill.loop import record_of
from recbole_foster.distill.synthetic import mean_entropy
from recbole_foster.training_sets import soft_sequence_loss

TD3_ITEM_MODES = ("sampled", "all")


class _Apply(nn.Module):
    """Lets ``functional_call`` run any function of the model (``fn(model)``), not only forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, fn):
        return fn(self.model)


def sgd_step(wrapper, params, batch, items, lr, create_graph):
    """One SGD step of the learner on soft sequences; params keyed as ``model.<name>``."""
    names = list(params)
    # the window's first step starts from plain tensors: they become leaves of its graph
    values = [params[k] if create_graph and params[k].requires_grad else params[k].detach().requires_grad_(True)
              for k in names]
    log_probs, targets = batch
    loss = functional_call(wrapper, dict(zip(names, values)),
                           (lambda m: soft_sequence_loss(m, log_probs, items, targets),))
    grads = torch.autograd.grad(loss, values, create_graph=create_graph, allow_unused=True)
    updated = {k: v - lr * g if g is not None else v for k, v, g in zip(names, values, grads)}
    if not create_graph:
        updated = {k: v.detach() for k, v in updated.items()}
    return updated


def unrolled_outer_loss(model, params, window, lr, outer_fn):
    """f at the end of a differentiable SGD window from ``params``.

    ``window`` is a list of ((input log-probs, target log-probs or None), items), one per step,
    carrying the graph to the synthetic factors; ``outer_fn(model)`` returns f. Returns (f, the final params).
    """
    wrapper = _Apply(model)
    for batch, items in window:
        params = sgd_step(wrapper, params, batch, items, lr, create_graph=True)
    return functional_call(wrapper, params, (outer_fn,)), params


class TD3Solver:
    """TD3's outer step: skip, then back-propagate f through an unrolled SGD window.

    The learner is the loop's model: it carries on from the end of its window (and the loop
    resets it every R steps); only the synthetic factors take an optimizer step.
    """

    label = "TD3"

    def __init__(self, config, model):
        if config["td3_items"] not in TD3_ITEM_MODES:
            raise ValueError(f"td3_items must be one of {TD3_ITEM_MODES}, got {config['td3_items']!r}.")
        self.all_items = config["td3_items"] == "all"
        self.window = int(config["td3_window"])
        self.max_skip = int(config["td3_max_skip"])
        self.inner_lr = float(config["td3_inner_lr"])
        self.grad_clip = config["td3_grad_clip"]
        self.dh_weight = config["td3_dh_weight"]
        if self.window < 1:
            raise ValueError(f"td3_window must be at least 1, got {self.window}.")

    def reset(self):
        pass  # plain SGD: no optimizer state of the learner

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def sample_subset(self, loop):
        if self.all_items:
            return torch.arange(1, loop.n_items, device=loop.device)
        return loop.sample_subset()

    def outer_step(self, loop):
        wrapper = _Apply(loop.model)
        params = {f"model.{k}": p.detach() for k, p in loop.model.named_parameters()}
        for _ in range(int(torch.randint(self.max_skip + 1, (1,), generator=loop.generator))):
            items = self.sample_subset(loop)
            with torch.no_grad():
                batch = loop.soft_batch(items)
            params = sgd_step(wrapper, params, batch, items, self.inner_lr, create_graph=False)

        window = []
        for _ in range(self.window):
            items = self.sample_subset(loop)
            window.append((loop.soft_batch(items), items))
        parts = {}

        def outer_fn(model):
            total, found = loop.outer_loss(window[-1][1], model, self.dh_weight)
            parts.update(found)
            return total

        f, params = unrolled_outer_loss(loop.model, params, window, self.inner_lr, outer_fn)
        synthetic = loop.summary.trainable_parameters()
        grads = torch.autograd.grad(f, synthetic, allow_unused=True)
        for p, g in zip(synthetic, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(synthetic, self.grad_clip)
        loop.synthetic_optimizer.step()
        loop.synthetic_optimizer.zero_grad()
        loop.model.load_state_dict({k[len("model."):]: v.detach() for k, v in params.items()}, strict=False)

        return record_of({"f": f, **parts, "entropy": mean_entropy(window[-1][0][0].detach().exp())},
                         anchor=loop.current_anchor)
