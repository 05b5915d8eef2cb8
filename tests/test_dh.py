"""The DH regulariser: both distances on hand-made inputs, the loss, where its gradient goes."""

import math

import pytest
import torch

from recbole_foster.distill.dh import conditional_distance, dh_loss, semantic_distance, total_variation
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text
from recbole_foster.model.text_sasrec import TextSASRec
from tests.test_coreset import Catalog


class IdentityTeacher:
    """A teacher whose hidden state at a position is that position's input embedding.

    With item representations ``sqrt(c) * e_i`` (one-hot), the next-item logits after item ``i``
    are ``c e_i``: ``e^c`` on ``i`` and 1 on every other item, normalised. The answers below follow
    by hand.
    """

    def __init__(self, n_items, c):
        self.reps = math.sqrt(c) * torch.eye(n_items)

    def item_representations(self, item_ids):
        return self.reps[item_ids]

    def encode_embeddings(self, emb, valid):
        return emb


def tv_of_two_one_hot_teachers(k, c):
    """TV between softmax(c e_a) and softmax(c e_b) over k items, a != b."""
    return (math.exp(c) - 1) / (math.exp(c) + k - 1)


def test_total_variation_by_hand():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = torch.tensor([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    assert torch.allclose(total_variation(p, q), torch.tensor([0.5, 0.0]))
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == 1.0


def test_conditional_distance_compares_occurrence_profiles():
    # one sequence, two cells; columns: item 0 -> [.5, .5], item 1 -> [.5, 0] -> [1, 0], item 2 -> [0, 1]
    probs = torch.tensor([[[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]])
    a, b = torch.tensor([0, 1, 0, 1, 2]), torch.tensor([1, 2, 0, 1, 0])
    assert torch.allclose(conditional_distance(probs, a, b), torch.tensor([0.5, 1.0, 0.0, 0.0, 0.5]))
    # profiles are normalised: scaling every occurrence of an item does not change its profile
    scaled = probs.clone()
    scaled[..., 0] *= 0.1
    assert torch.allclose(conditional_distance(scaled, a, b), conditional_distance(probs, a, b))


def test_semantic_distance_is_the_teachers_output_change_when_a_is_swapped_for_b():
    k, c = 3, math.log(5.0)
    teacher = IdentityTeacher(k, c)
    probs = torch.softmax(torch.randn(2, 4, k, generator=torch.Generator().manual_seed(0)), -1)
    items = torch.arange(k)
    a, b = torch.tensor([0, 1, 2, 1]), torch.tensor([1, 2, 2, 0])
    users, positions = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 3, 2, 1])
    d = semantic_distance(teacher, probs, items, a, b, users, positions)
    different = tv_of_two_one_hot_teachers(k, c)  # (5 - 1) / (5 + 2) = 4/7
    assert torch.allclose(d, torch.tensor([different, different, 0.0, different]))
    assert d.requires_grad is False  # a constant target


def test_semantic_distance_reads_only_positions_up_to_the_swap(toy_config):
    """With a causal teacher, the later positions of the synthetic context do not matter."""
    torch.manual_seed(3)  # weights fixed whatever ran before: an untrained teacher barely reads the context
    teacher = TextSASRec(toy_config, Catalog(10)).eval()
    items = torch.arange(1, 10)
    probs = torch.softmax(torch.randn(2, 5, 9, generator=torch.Generator().manual_seed(1)), -1)
    a, b = torch.tensor([0, 3]), torch.tensor([4, 5])
    users, positions = torch.tensor([0, 1]), torch.tensor([2, 1])
    d = semantic_distance(teacher, probs, items, a, b, users, positions)
    assert (d > 0).all()
    later = probs.clone()
    later[0, 3:] = later[0, 3:].flip(-1)  # after position 2 of user 0
    later[1, 2:] = later[1, 2:].flip(-1)  # after position 1 of user 1
    assert torch.allclose(semantic_distance(teacher, later, items, a, b, users, positions), d, atol=1e-6)
    earlier = probs.clone()
    earlier[0, :2] = earlier[0, :2].flip(-1)  # before the swap: the context changes
    assert not torch.allclose(semantic_distance(teacher, earlier, items, a, b, users, positions)[0], d[0])


def test_dh_loss_is_zero_when_the_distances_agree_and_their_squared_gap_otherwise():
    teacher = IdentityTeacher(2, math.log(3.0))  # d_sem = (3 - 1) / (3 + 1) = 0.5 for the only pair
    agree = torch.tensor([[[0.75, 0.25], [0.25, 0.75]]])  # profiles [.75, .25] vs [.25, .75]: d_cond = 0.5
    assert dh_loss(teacher, agree, torch.arange(2), 16, torch.Generator().manual_seed(0)) == pytest.approx(0.0,
                                                                                                           abs=1e-7)
    alike = torch.full((1, 2, 2), 0.5)  # identical profiles: d_cond = 0
    assert dh_loss(teacher, alike, torch.arange(2), 16, torch.Generator().manual_seed(0)) == pytest.approx(0.25)


def test_dh_pairs_are_always_two_different_items():
    teacher = IdentityTeacher(6, 2.0)
    probs = torch.softmax(torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(2)), -1)
    # every pair is of distinct items, so every d_sem is the one value for a != b
    d_sem = tv_of_two_one_hot_teachers(6, 2.0)
    uniform = torch.full((3, 4, 6), 1 / 6)  # d_cond = 0 for every pair
    assert dh_loss(teacher, uniform, torch.arange(6), 200, torch.Generator().manual_seed(3)) == pytest.approx(
        d_sem ** 2)
    assert torch.isfinite(dh_loss(teacher, probs, torch.arange(6), 200, torch.Generator().manual_seed(3)))


@pytest.fixture(scope="module")
def toy_config():
    from recbole_foster import FosterConfig

    return FosterConfig(model="TextSASRec", dataset="toy", config_dict={
        "use_gpu": False, "state": "WARNING", "hidden_size": 8, "inner_size": 16, "n_layers": 1, "n_heads": 1,
        "MAX_ITEM_LIST_LENGTH": 5})


def test_dh_gradient_reaches_the_summary_and_never_the_teacher(toy_config):
    torch.manual_seed(0)
    teacher = TextSASRec(toy_config, Catalog(30)).eval()  # its parameters still require grad
    assert all(p.requires_grad for p in teacher.parameters())
    summary = SyntheticSummary(item_factor_from_text(torch.randn(30, 8)), 3, 5, 2, 2)
    items = torch.arange(1, 30, 3)
    loss = dh_loss(teacher, summary.probabilities(items), items, 16, torch.Generator().manual_seed(0))
    assert loss > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in summary.trainable_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
