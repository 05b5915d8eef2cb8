"""First-order bilevel update of BOME (Liu et al., NeurIPS 2022), as FOSTER uses it (Sec. 3.2).

The bilevel problem ``min_phi f(theta*(phi), phi)  s.t.  theta*(phi) = argmin_theta g(theta, phi)``
becomes ``min f  s.t.  q(theta, phi) = g(theta, phi) - g(theta_T, phi) <= 0``, where ``theta_T``
(T plain inner steps from ``theta``) is treated as a constant. Every step moves *both* theta and
phi along ``grad f + lambda * grad q`` with the dynamic barrier

    lambda = max((phi_t - <grad f, grad q>) / ||grad q||^2, 0),   phi_t = eta * ||grad q||^2,

the inner products taken over the concatenated gradient of all parameters. Only first-order
gradients are used; nothing is unrolled.
"""

import torch


def _flat(grads, params):
    return torch.cat([
        (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
    ])


def bome_direction(grad_f, grad_q, params, eta=0.5, eps=1e-8):
    """Combine per-parameter gradients of f and q into BOME's update direction.

    ``grad_f``/``grad_q`` are lists aligned with ``params`` (``None`` = zero gradient).
    Returns ``(direction list, lambda as float, ||grad q||^2 as float)``.
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
    return direction, float(lam), float(q_norm2)


def value_gap_gradients(inner_loss, params_theta, params_phi, theta_T_loss_fn):
    """Gradients of ``q = g(theta, phi) - g(theta_T, phi)`` (theta_T fixed).

    ``inner_loss`` is g(theta, phi) already computed with a graph over theta and phi;
    ``theta_T_loss_fn()`` returns g(theta_T, phi) with a graph over phi only. Returns
    (q value, grads wrt theta, grads wrt phi). By Danskin, grad_theta q = grad_theta g(theta, phi).
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
    return float(inner_loss.detach() - loss_T.detach()), grad_theta, grad_phi


def negative_gap_share(history):
    """Share of recorded outer steps whose value gap q was negative (None without q).

    q >= 0 is BOME's premise: theta_T, T inner steps from theta, should fit the synthetic data
    better than theta. A negative q means the inner steps *raised* the synthetic loss (e.g. an
    inner lr too large near a converged anchor), and lambda * grad q then follows a failing
    inner loop (docs/experiments.md).
    """
    gaps = [record["q"] for record in history if "q" in record]
    return sum(q < 0 for q in gaps) / len(gaps) if gaps else None
