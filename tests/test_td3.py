"""TD3 (RaT-BPTT): the unrolled outer gradient is right, and its solver runs in the shared loop."""

import pytest
import torch

from recbole_foster.training_sets import HardSequences
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text
from recbole_foster.label_modes import MODES
from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import DistillationLoop
from recbole_foster.distill.td3 import TD3Solver, unrolled_outer_loss
from recbole_foster.model.text_sasrec import TextSASRec
from recbole_foster.run import prepare, run
from tests.test_distill import FakeCatalog, LargestNewTensor
from tests.toy_data import as_argv, toy_options


@pytest.fixture(scope="module")
def ctx(toy_data_root, tiny_bert_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("td3")
    return prepare(toy_options(toy_data_root, tiny_bert_dir, tmp, method="td3"))


def test_unrolled_gradient_matches_finite_differences(ctx):
    """d f(theta_window(phi)) / d phi through two SGD steps, against central differences (float64)."""
    torch.manual_seed(0)
    model = ctx.new_model(0).double().eval()
    catalog_size = model.n_items
    summary = SyntheticSummary(item_factor_from_text(model.item_text_embeddings), 3, 5, 2, 3).double()
    items = torch.arange(1, catalog_size)
    real = HardSequences(torch.tensor([[1, 2, 3, 4, 5], [7, 8, 9, 10, 0]]))
    outer_fn = lambda m: real.loss(m, torch.tensor([0, 1]))  # noqa: E731 - deterministic f
    start = {f"model.{k}": p.detach() for k, p in model.named_parameters()}

    def f_of_summary():
        window = [(summary.soft_batch(items), items)] * 2
        return unrolled_outer_loss(model, start, window, 0.5, outer_fn)[0]

    f = f_of_summary()
    grads = torch.autograd.grad(f, list(summary.parameters()))
    directions = [torch.randn_like(p) for p in summary.parameters()]
    analytic = sum((g * d).sum() for g, d in zip(grads, directions))
    eps = 1e-5

    def shift(step):
        with torch.no_grad():
            for p, d in zip(summary.parameters(), directions):
                p.add_(step * d)

    shift(eps)
    plus = f_of_summary().detach()
    shift(-2 * eps)
    minus = f_of_summary().detach()
    numeric = (plus - minus) / (2 * eps)
    assert analytic.abs() > 1e-6  # the window really depends on the synthetic data
    assert torch.allclose(analytic, numeric, rtol=1e-4, atol=1e-8)


def make_td3(ctx, n_items, items_mode):
    config = ctx.config
    config["foster_reset"] = config["foster_start"] = "random"
    config["td3_items"] = items_mode
    config["td3_window"], config["td3_max_skip"] = 2, 1
    catalog = FakeCatalog(n_items)
    torch.manual_seed(0)
    model, teacher = TextSASRec(config, catalog), TextSASRec(config, catalog)
    summary = SyntheticSummary(item_factor_from_text(catalog.item_text_embeddings), 4, config["foster_seq_len"], 4, 4)
    return DistillationLoop(config, model, teacher, summary, ctx.train_data.dataset, None, [], MODES["coupled"],
                            TD3Solver)


def largest_tensor_of_a_step(trainer):
    trainer.outer_step()
    largest = LargestNewTensor()
    with largest:
        trainer.outer_step()
    return largest.largest


def test_sampled_td3_step_is_catalog_independent_and_all_items_is_not(ctx):
    assert largest_tensor_of_a_step(make_td3(ctx, 1_000, "sampled")) == \
        largest_tensor_of_a_step(make_td3(ctx, 20_000, "sampled"))
    # TD3 as published: a softmax over the whole catalog, so its tensors grow with it
    assert largest_tensor_of_a_step(make_td3(ctx, 20_000, "all")) >= 20_000 * 4 * ctx.config["foster_seq_len"]


def test_td3_step_moves_the_synthetic_data_and_carries_the_learner(ctx):
    trainer = make_td3(ctx, 300, "sampled")
    trainer.outer_step()
    summary_before = [p.detach().clone() for p in trainer.summary.parameters()]
    model_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer.outer_step()
    assert any(not torch.equal(a, b) for a, b in zip(summary_before, trainer.summary.parameters()))
    assert any(not torch.equal(model_before[k], v) for k, v in trainer.model.state_dict().items())
    assert {"f", "bce", "fm", "entropy"} <= set(record) and "lambda" not in record
    ctx.config["td3_items"] = "bogus"
    with pytest.raises(ValueError, match="td3_items"):
        DistillationLoop(ctx.config, trainer.model, trainer.teacher, trainer.summary,
                         ctx.train_data.dataset, None, [], MODES["coupled"], TD3Solver)
    ctx.config["td3_items"] = "sampled"


def test_td3_resumes_to_the_same_result_as_an_uninterrupted_run(ctx, tmp_path):
    straight = make_td3(ctx, 300, "sampled")
    straight.run(show_progress=False)
    first = make_td3(ctx, 300, "sampled")
    first.run(show_progress=False, stop_after=3)
    path = str(tmp_path / "td3.pt")
    first.save_checkpoint(path)
    torch.manual_seed(123)  # a new process would start from another RNG state
    resumed = make_td3(ctx, 300, "sampled")
    resumed.load_checkpoint(path)
    resumed.run(show_progress=False)
    assert resumed.step == straight.step == ctx.config["foster_outer_steps"]
    assert [r["f"] for r in resumed.history] == [r["f"] for r in straight.history]
    for a, b in zip(straight.summary.parameters(), resumed.summary.parameters()):
        assert torch.equal(a, b)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])


def test_the_two_solvers_share_the_loop_and_neither_extends_the_other():
    assert not issubclass(TD3Solver, BomeSolver) and not issubclass(BomeSolver, TD3Solver)
    assert all(callable(getattr(solver, name)) for solver in (BomeSolver, TD3Solver)
               for name in ("outer_step", "reset", "state_dict", "load_state_dict"))


@pytest.mark.slow
def test_td3_method_end_to_end(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="td3", td3_window=2,
                          td3_max_skip=2, foster_compare_random="False")
    results = run(as_argv(options))
    assert set(results["table"]) == {"Full", "TD3-4"}
    assert len(results["per_seed"]) == 2 and len(results["history"]) == 6
    assert results["synthetic"].endswith("synthetic.pt")
