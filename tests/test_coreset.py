"""Coreset selection: K-Center, DEALRec (LiSSA influence, strata sampling), GORACS (OT swaps)."""

import itertools
import platform

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from recbole_foster.coreset import (
    dealrec_select,
    goracs_cost,
    goracs_select,
    greedy_k_center,
    influence_scores,
    last_hidden_states,
    lissa_inverse_hvp,
    ot_distance,
    per_sample_grad_norms,
    per_sample_losses,
)
from recbole_foster.coreset import signals
from recbole_foster.coreset.goracs import greedy_init, swap_refine
from recbole_foster.training_sets import HardSequences
from recbole_foster.model.text_sasrec import TextSASRec

# ----------------------------------------------------------------------------- tiny TextSASRec


class Catalog:
    """Stands in for a RecBole dataset: ``n_items`` items with random text embeddings."""

    def __init__(self, n_items, dim=8):
        self.n_items = n_items
        self.item_text_embeddings = torch.randn(n_items, dim, generator=torch.Generator().manual_seed(0))
        self.item_text_embeddings[0] = 0

    def num(self, field):
        return self.n_items


CONFIG = {
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
    "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": 6,
    "device": "cpu", "hidden_size": 4, "inner_size": 8, "n_layers": 1, "n_heads": 1,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5,  # large: eval mode must really matter
    "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.5, "loss_type": "CE",
    "loss_all_positions": True,
}
ATTENTION_OUT = "trm_encoder.layer.0.multi_head_attention.dense.weight"  # DEALRec's choice of matrix


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors here are tiny: intra-op threads only add waiting on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return TextSASRec(CONFIG, Catalog(12)).double()


@pytest.fixture()
def seqs():
    """Right-padded sequences of lengths 6, 5, 4, 3, 2, 6, 3, 4."""
    g = torch.Generator().manual_seed(1)
    lengths = [6, 5, 4, 3, 2, 6, 3, 4]
    out = torch.zeros(len(lengths), 6, dtype=torch.long)
    for row, n in enumerate(lengths):
        out[row, :n] = torch.randint(1, 12, (n,), generator=g)
    return out


def reference_grads(model, seqs, name):
    """Per-sequence gradients by a plain backward loop on the loss the evaluation trains on."""
    model.eval()
    param = dict(model.named_parameters())[name]
    data = HardSequences(seqs)
    return torch.stack([torch.autograd.grad(data.loss(model, [i]), param)[0].flatten() for i in range(len(seqs))])


# ----------------------------------------------------------------------------- K-Center


def clusters(centers, per_cluster=10, spread=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor(centers, dtype=torch.float)
    points = centers.repeat_interleave(per_cluster, 0)
    return points + spread * torch.randn(points.shape, generator=g)


def test_k_center_takes_one_point_from_each_far_apart_cluster():
    points = clusters([[0, 0], [100, 0], [0, 100], [100, 100]])
    for seed in range(5):
        chosen = greedy_k_center(points, 4, seed)
        assert sorted((chosen // 10).tolist()) == [0, 1, 2, 3]


def test_k_center_picks_the_outlier_whatever_the_start():
    points = torch.cat([clusters([[0, 0]], per_cluster=30), torch.tensor([[50.0, 50.0]])])
    for seed in range(5):
        assert 30 in greedy_k_center(points, 2, seed).tolist()


def test_k_center_never_repeats_a_point_even_among_duplicates():
    points = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]).repeat(5, 1)  # 3 distinct, 15 rows
    chosen = greedy_k_center(points, 12, seed=3)
    assert len(set(chosen.tolist())) == 12
    assert {tuple(p) for p in points[chosen[:3]].tolist()} == {(0, 0), (5, 0), (0, 5)}
    with pytest.raises(ValueError, match="n=16 of 15"):
        greedy_k_center(points, 16, seed=0)


def test_k_center_memory_is_linear_in_the_number_of_points():
    points = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    chosen = greedy_k_center(points, 3, seed=0)  # an N x N distance matrix would need 320 GB
    assert len(set(chosen.tolist())) == 3


# ----------------------------------------------------------------------------- signals


def test_hidden_states_losses_and_grad_norms_match_plain_per_sequence_computation(model, seqs):
    model.train()  # signals must switch dropout off themselves, and switch the mode back
    hidden = last_hidden_states(model, seqs, batch_size=3)
    losses = per_sample_losses(model, seqs, batch_size=3)
    norms = per_sample_grad_norms(model, seqs, batch_size=3)
    assert model.training
    model.eval()
    lengths = (seqs > 0).sum(1)
    with torch.no_grad():
        assert torch.allclose(hidden, model.forward(seqs, lengths), atol=1e-12)
        data = HardSequences(seqs)
        assert torch.allclose(losses, torch.stack([data.loss(model, [i]) for i in range(len(seqs))]), atol=1e-12)
    params = list(model.parameters())
    loop = torch.stack([
        torch.cat([g.flatten() for g in torch.autograd.grad(data.loss(model, [i]), params)]).norm()
        for i in range(len(seqs))
    ])
    assert torch.allclose(norms, loop, atol=1e-10)
    restricted = per_sample_grad_norms(model, seqs, params=[ATTENTION_OUT])
    assert torch.allclose(restricted, reference_grads(model, seqs, ATTENTION_OUT).norm(dim=1), atol=1e-10)


def test_one_item_sequence_has_zero_loss_and_gradient(model):
    seqs = torch.tensor([[3, 0, 0, 0, 0, 0], [3, 4, 0, 0, 0, 0]])
    assert per_sample_losses(model, seqs)[0] == 0
    norms = per_sample_grad_norms(model, seqs)
    assert norms[0] == 0 and norms[1] > 0
    with pytest.raises(KeyError, match="nope"):
        per_sample_grad_norms(model, seqs, params=["nope"])


def test_every_batch_of_a_pass_hands_freed_memory_back(model, seqs, monkeypatch):
    """glibc otherwise keeps what the batches free: DEALRec's effort pass on amazon-games grew to
    19.6 GB resident with ~1 GB of live tensors and was OOM-killed (BENCHMARKS.md)."""
    if platform.libc_ver()[0] == "glibc":
        assert signals._malloc_trim() is not None
    signals.release_freed_memory()  # callable for real, also where there is no malloc_trim
    calls = []
    monkeypatch.setattr(signals, "release_freed_memory", lambda: calls.append(1))
    per_sample_grad_norms(model, seqs, batch_size=3)
    assert len(calls) == -(-len(seqs) // 3)


def quadratic(dim=6, seed=0):
    """Loss 0.5 z'Az - b'z over z = (x (2,), y (2, 2)): Hessian A, eigenvalues 1..3."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.double))
    a = q @ torch.diag(torch.linspace(1, 3, dim, dtype=torch.double)) @ q.T
    b = torch.randn(dim, generator=g, dtype=torch.double)
    x = torch.randn(2, generator=g, dtype=torch.double, requires_grad=True)
    y = torch.randn(2, 2, generator=g, dtype=torch.double, requires_grad=True)

    def loss_fn(batch):
        z = torch.cat([x, y.flatten()])
        return 0.5 * z @ a @ z - b @ z

    v = torch.randn(dim, generator=g, dtype=torch.double)
    return loss_fn, [x, y], a, v


def test_lissa_matches_a_linear_solve_on_a_quadratic():
    loss_fn, params, a, v = quadratic()
    v_list = [v[:2], v[2:].view(2, 2)]
    # no damping, scale 5: contraction 1 - lambda/5 <= 0.8, so 200 steps are exact to ~1e-19
    h = lissa_inverse_hvp(loss_fn, params, v_list, damping=0.0, scale=5.0, depth=200)
    assert torch.allclose(torch.cat([t.flatten() for t in h]), torch.linalg.solve(a, v), atol=1e-10)
    # the defaults (damping 0.01, scale 25) estimate the ridge-damped inverse (A + 0.25 I)^-1 v
    # (contraction 1 - 0.01 - lambda/25 <= 0.95: 500 steps leave ~1e-11)
    h = lissa_inverse_hvp(loss_fn, params, v_list, depth=500)
    expected = torch.linalg.solve(a + 0.25 * torch.eye(6, dtype=torch.double), v)
    assert torch.allclose(torch.cat([t.flatten() for t in h]), expected, atol=1e-9)


class MeanLoss(nn.Module):
    """Mean over ``seqs`` of the evaluation's per-sequence loss, as a module for functional_call."""

    def __init__(self, model, seqs):
        super().__init__()
        self.model, self.data = model, HardSequences(seqs)

    def forward(self):
        return torch.stack([self.data.loss(self.model, [i]) for i in range(len(self.data))]).mean()


def test_influence_equals_the_explicit_inverse_hessian_formula(model, seqs):
    model.eval()
    param = dict(model.named_parameters())[ATTENTION_OUT]
    mean_loss = MeanLoss(model, seqs)
    hessian = torch.autograd.functional.hessian(
        lambda w: functional_call(mean_loss, {f"model.{ATTENTION_OUT}": w}, ()), param.detach().clone()
    ).reshape(16, 16)
    eigenvalues = torch.linalg.eigvalsh(hessian)  # indefinite at a random initialisation
    ridge = 1.0 - float(eigenvalues.min())  # H + ridge I has eigenvalues in [1, lambda_max + ridge]
    scale = float(eigenvalues.max()) + ridge
    damping = ridge / scale  # LiSSA's ridge is damping * scale; contraction <= 1 - 1 / scale
    grads = reference_grads(model, seqs, ATTENTION_OUT)
    expected = grads @ torch.linalg.solve(hessian + ridge * torch.eye(16, dtype=torch.double), grads.mean(0))
    depth = int(np.ceil(np.log(1e-12) / np.log(1 - 1 / scale)))
    scores = influence_scores(model, seqs, [ATTENTION_OUT], depth=depth, damping=damping, scale=scale,
                              lissa_batch_size=len(seqs), batch_size=3)
    assert torch.allclose(scores, expected, rtol=1e-6, atol=1e-10)


# ----------------------------------------------------------------------------- DEALRec

# overall = minmax(influence) = influence / 10 (effort constant, so minmax(effort) = 0):
#   index:   0    1     2    3     4    5     6     7    8    9
#   score:  0.0  0.05  0.1  0.12  0.5  0.55  0.58  0.9  1.0  0.95
# prune_ratio 0.2 -> floor(2) hardest = highest scores: 8 (1.0), 9 (0.95).
# Remaining range [0, 0.9], 3 strata of width 0.3 (right-closed): S0 = {0,1,2,3} (<= 0.3),
# S1 = {4,5,6} (<= 0.6), S2 = {7} (<= 0.9). Smallest first: S2, S1, S0.
INFLUENCE = torch.tensor([0.0, 0.5, 1.0, 1.2, 5.0, 5.5, 5.8, 9.0, 10.0, 9.5])
EFFORT = torch.full((10,), 7.0)
S0, S1, S2 = {0, 1, 2, 3}, {4, 5, 6}, {7}


def test_dealrec_budget_5_follows_the_strata_by_hand():
    # S2: min(1, 5 // 3 = 1) = 1 -> {7}, budget 4; S1: min(3, 4 // 2 = 2) = 2, budget 2; S0: min(4, 2) = 2
    for seed in range(5):
        chosen = set(dealrec_select(INFLUENCE, EFFORT, 5, prune_ratio=0.2, n_strata=3, seed=seed).tolist())
        assert len(chosen) == 5 and S2 <= chosen and not chosen & {8, 9}
        assert len(chosen & S1) == 2 and len(chosen & S0) == 2


def test_dealrec_budget_8_takes_every_unpruned_sample():
    # S2: min(1, 8 // 3 = 2) = 1, budget 7; S1: min(3, 7 // 2 = 3) = 3, budget 4; S0: min(4, 4) = 4
    chosen = dealrec_select(INFLUENCE, EFFORT, 8, prune_ratio=0.2, n_strata=3, seed=0)
    assert chosen.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match=r"n=9 but only 8 of 10 samples remain after pruning the 2 hardest"):
        dealrec_select(INFLUENCE, EFFORT, 9, prune_ratio=0.2, n_strata=3)


def test_dealrec_effort_counts_with_its_weight_and_high_scores_are_pruned():
    # influence constant -> overall = 0.5 * minmax(effort) = [0.5, 1/6, 1/3, 0]: sample 0 is the hardest
    chosen = dealrec_select(torch.ones(4), torch.tensor([3.0, 1.0, 2.0, 0.0]), 3, prune_ratio=0.25, n_strata=1)
    assert chosen.tolist() == [1, 2, 3]
    # influence decides when effort_weight is 0: sample 3 now has the highest score
    chosen = dealrec_select(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([3.0, 1.0, 2.0, 0.0]), 3,
                            effort_weight=0.0, prune_ratio=0.25, n_strata=1)
    assert chosen.tolist() == [0, 1, 2]


def test_dealrec_meets_the_budget_without_duplicates_on_random_scores():
    g = torch.Generator().manual_seed(0)
    influence, effort = torch.randn(300, generator=g), torch.rand(300, generator=g) ** 3  # skewed strata
    overall = (influence - influence.min()) / (influence.max() - influence.min()) \
        + 0.5 * (effort - effort.min()) / (effort.max() - effort.min())
    pruned = set(overall.argsort(descending=True)[:30].tolist())
    for n in (1, 7, 50, 199, 270):
        chosen = dealrec_select(influence, effort, n, seed=n)
        assert len(chosen) == len(set(chosen.tolist())) == n and not set(chosen.tolist()) & pruned
    assert torch.equal(dealrec_select(influence, effort, 50, seed=1), dealrec_select(influence, effort, 50, seed=1))


# ----------------------------------------------------------------------------- GORACS


def test_goracs_cost_by_hand():
    # distances [[0, 5], [5, 0], [10, 5]] / 10; minmax([1, 3, 2]) = [0, 1, 0.5]; lam 0.2 subtracts [0, .2, .1]
    train = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    valid = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    cost = goracs_cost(train, valid, torch.tensor([1.0, 3.0, 2.0]), lam=0.2)
    expected = torch.tensor([[0.0, 0.5], [0.3, -0.2], [0.9, 0.4]], dtype=torch.double)
    assert torch.allclose(cost, expected, atol=1e-12)


def test_goracs_cost_validation_subsample_is_seeded():
    g = torch.Generator().manual_seed(0)
    train, valid = torch.randn(5, 3, generator=g), torch.randn(50, 3, generator=g)
    sub = goracs_cost(train, valid, torch.ones(5), lam=0.0, valid_subsample=10, seed=4)
    assert sub.shape == (5, 10) and torch.equal(sub, goracs_cost(train, valid, torch.ones(5), 0.0, 10, seed=4))
    assert not torch.equal(sub, goracs_cost(train, valid, torch.ones(5), 0.0, 10, seed=5))
    # its columns are 10 distinct validation rows' distances, divided by their own max
    full = torch.cdist(train.double(), valid.double())
    unit = lambda m: m / m.norm(dim=0)  # noqa: E731  (column directions ignore the common scale)
    rows = (unit(sub).T.unsqueeze(1) - unit(full).T.unsqueeze(0)).abs().sum(-1).argmin(1)
    assert len(set(rows.tolist())) == 10
    assert torch.allclose(sub, full[:, rows] / full[:, rows].max(), atol=1e-12)


def test_ot_distance_by_hand():
    cost = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    # rows 1/2 each, columns 1/3 each: row 0 -> col 0 (cost 0), row 1 -> col 2 (0), col 1 split at cost 1
    assert ot_distance(cost, [0, 1]) == pytest.approx(1 / 3, abs=1e-12)
    # one row carries everything: (0 + 1 + 2) / 3
    assert ot_distance(torch.tensor(cost), [0]) == pytest.approx(1.0, abs=1e-12)


# Row 2 has the smallest sum (6) and is picked first; then rows 0, 1, 3 all lower the facility
# objective to 4 (tie -> row 0); then rows 1 and 3 both reach 2 (tie -> row 1). The OT distance of
# {0, 1, 2} is 2/3 (row 2 must carry a third of the mass at cost 2); swapping 2 for 3 gives 0.
HAND_COST = np.array([[0.0, 5.0, 5.0], [5.0, 0.0, 5.0], [2.0, 2.0, 2.0], [5.0, 5.0, 0.0]])


def test_goracs_greedy_init_and_swap_by_hand():
    assert greedy_init(HAND_COST, 3).tolist() == [2, 0, 1]
    assert ot_distance(HAND_COST, [0, 1, 2]) == pytest.approx(2 / 3)
    selected, history = swap_refine(HAND_COST, [2, 0, 1])
    assert selected.tolist() == [0, 1, 3] and history == pytest.approx([2 / 3, 0.0])
    assert goracs_select(HAND_COST, 3).tolist() == [0, 1, 3]


def test_goracs_finds_the_training_points_the_validation_set_sits_on():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(20, 2, generator=g) * 10
    targets = [2, 5, 7, 13]
    valid = train[targets].repeat_interleave(3, dim=0)  # equal weights: uniform coreset mass fits exactly
    cost = goracs_cost(train, valid, torch.rand(20, generator=g), lam=0.0)
    chosen = goracs_select(cost, 4)
    assert chosen.tolist() == targets
    assert ot_distance(cost, chosen) == pytest.approx(0.0, abs=1e-12)


def test_goracs_gradient_bonus_breaks_a_distance_tie():
    train = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [5.0, 5.0]])  # rows 0 and 1 equally far from valid
    valid = torch.tensor([[0.0, 0.0]])
    assert goracs_select(goracs_cost(train, valid, torch.tensor([1.0, 2.0, 0.0]), lam=0.1), 1).tolist() == [1]
    assert goracs_select(goracs_cost(train, valid, torch.tensor([2.0, 1.0, 0.0]), lam=0.1), 1).tolist() == [0]


def test_goracs_swaps_only_ever_lower_the_distance():
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(10, 12, generator=g, dtype=torch.double)
    start = [0, 1, 2, 3]
    selected, history = swap_refine(cost, start, max_swaps=50, n_candidates=4)
    assert history[0] == pytest.approx(ot_distance(cost, start))
    assert history[-1] == pytest.approx(ot_distance(cost, selected))
    assert len(history) > 1 and all(b < a for a, b in zip(history, history[1:]))
    # stopped because no candidate swap improves: then no single swap among those tried helps
    assert swap_refine(cost, selected.tolist(), n_candidates=4)[1] == pytest.approx([history[-1]])
    assert len(swap_refine(cost, start, max_swaps=1)[1]) == 2  # the cap counts accepted swaps
    brute = min(ot_distance(cost, list(s)) for s in itertools.combinations(range(10), 4))
    assert history[-1] >= brute - 1e-12
