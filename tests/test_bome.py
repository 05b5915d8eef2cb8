"""BOME's first-order update solves a bilevel problem whose solution is known in closed form."""

import torch

from recbole_foster.distill.bome import bome_direction, value_gap_gradients


def test_lambda_is_zero_when_f_already_decreases_q_enough():
    p = [torch.zeros(2)]
    direction, lam, _ = bome_direction([torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 0.0])], p, eta=0.5)
    assert lam == 0.0  # <grad f, grad q> = 1 >= eta * ||grad q||^2 = 0.5
    assert torch.equal(direction[0], torch.tensor([1.0, 0.0]))


def test_lambda_matches_formula():
    p = [torch.zeros(2)]
    gf, gq = torch.tensor([0.0, 1.0]), torch.tensor([2.0, 0.0])
    direction, lam, q_norm2 = bome_direction([gf], [gq], p, eta=0.5)
    assert q_norm2 == 4.0
    assert abs(lam - (0.5 * 4.0 - 0.0) / 4.0) < 1e-6
    assert torch.allclose(direction[0], gf + lam * gq)


def test_bome_solves_quadratic_bilevel_problem():
    """min_x 1/2||y*(x) - b||^2 + mu/2 ||x||^2,  y*(x) = argmin_y 1/2||y - A x||^2 = A x."""
    torch.manual_seed(0)
    A = torch.tensor([[2.0, 0.5], [-0.3, 1.0], [0.4, -1.2]])
    b = torch.tensor([1.0, -2.0, 0.5])
    mu = 0.1
    x_star = torch.linalg.solve(A.T @ A + mu * torch.eye(2), A.T @ b)

    x = torch.zeros(2, requires_grad=True)  # outer variable (the "synthetic data")
    y = torch.zeros(3, requires_grad=True)  # inner variable (the "model")

    def g(x_, y_):
        return 0.5 * ((y_ - A @ x_) ** 2).sum()

    def f(x_, y_):
        return 0.5 * ((y_ - b) ** 2).sum() + 0.5 * mu * (x_ ** 2).sum()

    # BOME converges to an O(lr) neighbourhood of the solution (q ~ lr at the fixed point).
    assert (x.detach() - x_star).abs().max() > 0.5  # the start is far from the answer
    lr, inner_lr, inner_steps = 0.02, 0.5, 10
    for _ in range(6000):
        y_T = y.detach().clone()
        for _ in range(inner_steps):  # plain gradient steps on g, no graph kept
            y_T = y_T - inner_lr * (y_T - A @ x.detach())
        q, gq_y, gq_x = value_gap_gradients(g(x, y), [y], [x], lambda: g(x, y_T))
        grad_f = list(torch.autograd.grad(f(x, y), [y, x]))
        direction, lam, _ = bome_direction(grad_f, gq_y + gq_x, [y, x], eta=0.5)
        with torch.no_grad():
            y -= lr * direction[0]
            x -= lr * direction[1]

    assert torch.allclose(x.detach(), x_star, atol=5e-3), (x, x_star)
    assert torch.allclose(y_T, A @ x_star, atol=1e-2)  # the inner solution at x
    assert q < 5e-3  # the inner problem is (nearly) solved at the end


def test_negative_gap_share_counts_steps_whose_inner_loop_raised_the_loss():
    from recbole_foster.distill.bome import negative_gap_share

    history = [{"q": 0.3}, {"q": -0.1}, {"q": 0.0}, {"q": -2.0}, {"f": 1.0}]
    assert negative_gap_share(history) == 0.5  # 2 of the 4 steps that recorded q
    assert negative_gap_share([{"f": 1.0}]) is None  # TD3 records no q
