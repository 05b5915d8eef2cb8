"""First-order bilevel update of BOME (Liu et al., NeurIPS 2022), as FOSTER uses it (Sec. 3.2).

The bilevel problem ``min_phi f(theta*(phi), phi)  s.t.  theta*(phi) = argmin_theta g(theta, phi)``
becomes ``min f  s.t.  q(theta, phi) = g(theta, phi) - g(theta_T, phi) <= 0``, where ``theta_T``
(T plain inner steps from ``theta``) is treated as a constant. Every step moves *both* theta and
phi along ``grad f + lambda * grad q`` with the dynamic barrier

    lambda = max((phi_t - <grad f, grad q>) / ||grad q||^2, 0),   phi_t = eta * ||grad q||^2,

the inner products taken over the concatenated gradient of all parameters. Only first-order
gradients are used; nothing is unrolled.

:class:`BomeSolver` is FOSTER's outer step with it, a solver of
:class:`recbole_foster.distill.loop.DistillationLoop`.
"""

import torch

from recbole_foster.distill.loop import record_of
from recbole_foster.distill.synthetic import mean_entropy
from recbole_foster.model.text_item_embedding import copy_sharing_tables
from recbole_foster.training_sets import soft_sequence_loss

# RecBole's ``learner`` names (``Trainer._build_optimizer``); anything else falls back to Adam, as there
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
               "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop}


def _flat(grads, params):
    return torch.cat([
        (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
    ])


def bome_direction(grad_f, grad_q, params, eta=0.5, eps=1e-8):
    """Combine per-parameter gradients of f and q into BOME's update direction.

    ``grad_f``/``grad_q`` are lists aligned with ``params`` (``None`` = zero gradient).
    Returns ``(direction list, lambda, ||grad q||^2)``, the last two as 0-d tensors on the
    gradients' device (reading them as numbers waits for the device; the caller reads once).
    """
    flat_f, flat_q = _flat(grad_f, params), _flat(grad_q, params)
    q_norm2 = flat_q.dot(flat_q)
    barrier = eta * q_norm2
    lam = torch.clamp((barrier - flat_f.dot(flat_q)) / (q_norm2 + eps), min=0.0)
    direction = []
    for gf, gq, p in zip(grad_f, grad_q, params):
        gf = gf if gf is not None else torch.zeros_like(p)
        gq = gq if gq is not None else torch.zeros_like(p)
        direction.append(gf + lam * gq)
    return direction, lam, q_norm2


def value_gap_gradients(inner_loss, params_theta, params_phi, theta_T_loss_fn):
    """Gradients of ``q = g(theta, phi) - g(theta_T, phi)`` (theta_T fixed).

    ``inner_loss`` is g(theta, phi) already computed with a graph over theta and phi;
    ``theta_T_loss_fn()`` returns g(theta_T, phi) with a graph over phi only. Returns
    (q as a detached 0-d tensor, grads wrt theta, grads wrt phi). By Danskin,
    grad_theta q = grad_theta g(theta, phi).
    """
    # retain: g(theta_T, phi) below shares the synthetic part of the graph
    grads_at_theta = torch.autograd.grad(inner_loss, params_theta + params_phi, allow_unused=True, retain_graph=True)
    loss_T = theta_T_loss_fn()
    grads_phi_T = torch.autograd.grad(loss_T, params_phi, allow_unused=True)
    n = len(params_theta)
    grad_theta = list(grads_at_theta[:n])
    grad_phi = [
        (a if a is not None else torch.zeros_like(p)) - (b if b is not None else torch.zeros_like(p))
        for a, b, p in zip(grads_at_theta[n:], grads_phi_T, params_phi)
    ]
    return (inner_loss - loss_T).detach(), grad_theta, grad_phi


def negative_gap_share(history):
    """Share of recorded outer steps whose value gap q was negative (None without q).

    q >= 0 is BOME's premise: theta_T, T inner steps from theta, should fit the synthetic data
    better than theta. A negative q means the inner steps *raised* the synthetic loss (e.g. an
    inner lr too large near a converged anchor), and lambda * grad q then follows a failing
    inner loop (docs/experiments.md).
    """
    gaps = [record["q"] for record in history if "q" in record]
    return sum(q < 0 for q in gaps) / len(gaps) if gaps else None


def model_optimizer(config, params, lr):
    """The configured ``learner`` (as RecBole builds it) over ``params``, without weight decay."""
    learner = str(config["learner"]).lower()
    if learner == "sparse_adam":
        return torch.optim.SparseAdam(params, lr=lr)
    return _OPTIMIZERS.get(learner, torch.optim.Adam)(params, lr=lr, weight_decay=0.0)


class BomeSolver:
    """FOSTER's outer step (paper Alg. 2, Sec. 3.2).

    1. T inner Adam steps on a copy of the model over the synthetic data (a fresh item subset
       each step) give theta_T;
    2. the value gap q = L_in(theta) - L_in(theta_T) and the real-data loss f on a fresh subset;
    3. the model (``learner`` at ``foster_model_lr``) and the synthetic factors both move along
       grad f + lambda * grad q. Every backward pass is first order.
    """

    label = "FOSTER"

    def __init__(self, config, model):
        self.inner_model = copy_sharing_tables(model)
        self.inner_steps = config["foster_inner_steps"]
        self.inner_lr = config["foster_inner_lr"]
        self.eta = config["foster_eta"]
        self.dh_weight = config["foster_dh_weight"]
        self.optimizer = model_optimizer(config, model.parameters(), config["foster_model_lr"])

    def reset(self):
        self.optimizer.state.clear()  # Adam moments of another point are dropped

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.optimizer.load_state_dict(state["optimizer"])

    def inner_solve(self, loop):
        """theta_T: T Adam steps on the synthetic data from the current theta (on a copy)."""
        self.inner_model.load_state_dict(loop.model.state_dict())
        params = [p for p in self.inner_model.parameters()]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(params, lr=self.inner_lr)
        for _ in range(self.inner_steps):
            items = loop.sample_subset()
            with torch.no_grad():
                log_probs, targets = loop.soft_batch(items)
            loss = soft_sequence_loss(self.inner_model, log_probs, items, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for p in params:
            p.requires_grad_(False)

    def outer_step(self, loop):
        self.inner_solve(loop)

        theta = [p for p in loop.model.parameters() if p.requires_grad]
        phi = loop.summary.trainable_parameters()
        items = loop.sample_subset()
        log_probs, targets = loop.soft_batch(items)
        inner_at_theta = soft_sequence_loss(loop.model, log_probs, items, targets)
        q, gq_theta, gq_phi = value_gap_gradients(
            inner_at_theta, theta, phi, lambda: soft_sequence_loss(self.inner_model, log_probs, items, targets)
        )
        f, parts = loop.outer_loss(items, loop.model, self.dh_weight)
        grad_f = torch.autograd.grad(f, theta + phi, allow_unused=True)
        direction, lam, _ = bome_direction(list(grad_f), gq_theta + gq_phi, theta + phi, eta=self.eta)
        for p, d in zip(theta + phi, direction):
            p.grad = d
        self.optimizer.step()
        loop.synthetic_optimizer.step()
        self.optimizer.zero_grad()
        loop.synthetic_optimizer.zero_grad()

        values = {"f": f, **parts, "q": q, "lambda": lam, "entropy": mean_entropy(log_probs.detach().exp())}
        if targets is not None:
            values["target_entropy"] = mean_entropy(targets.detach().exp())
        return record_of(values, anchor=loop.current_anchor)
