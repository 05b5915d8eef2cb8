"""The distillation loop with FOSTER's BOME solver: where each step starts from, and what it moves.

Built without a dataset: a fake catalog (random text embeddings), a few hand-made real training
samples, and a fake real-data run whose anchors are state dicts of other models.
"""

from types import SimpleNamespace

import pytest
import torch

from recbole_foster import FosterConfig
from recbole_foster.distill import bome as bome_module
from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import DistillationLoop
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text
from recbole_foster.label_modes import MODES
from recbole_foster.model.text_sasrec import TextSASRec

N_ITEMS, LENGTH = 40, 6


class Catalog:
    def __init__(self, n_items=N_ITEMS, dim=8):
        self.n_items = n_items
        self.item_text_embeddings = torch.randn(n_items, dim, generator=torch.Generator().manual_seed(0))
        self.item_text_embeddings[0] = 0

    def num(self, field):
        return self.n_items


class FakeRealRun:
    """``load_anchor(row, device)`` as :class:`recbole_foster.real_run.RealRun` has it, from memory."""

    def __init__(self, states):
        self.states = states
        self.loaded = []

    def load_anchor(self, row, device):
        self.loaded.append(row["epoch"])
        return {k: v.clone() for k, v in self.states[row["epoch"]].items()}


def config_for(tmp_path, **overrides):
    options = {
        "use_gpu": False, "state": "WARNING", "checkpoint_dir": str(tmp_path / "saved"),
        "hidden_size": 8, "inner_size": 16, "n_layers": 1, "n_heads": 1, "MAX_ITEM_LIST_LENGTH": LENGTH,
        "n_sampled_items": 8, "foster_outer_steps": 6, "foster_inner_steps": 2, "foster_reset_interval": 3,
        "foster_real_batch_size": 8, "foster_dh_pairs": 8, "foster_user_rank": 3, "foster_time_rank": 3,
        "foster_seq_len": LENGTH,
    }
    options.update(overrides)
    return FosterConfig(model="TextSASRec", dataset="toy", config_dict=options)


def new_model(config, seed):
    torch.manual_seed(seed)
    return TextSASRec(config, Catalog())


def real_samples(model):
    """Prefix -> next item samples, as RecBole's SequentialDataset stores them."""
    generator = torch.Generator().manual_seed(0)
    seqs = torch.randint(1, N_ITEMS, (12, LENGTH), generator=generator)
    lengths = torch.randint(1, LENGTH + 1, (12,), generator=generator)
    seqs[torch.arange(LENGTH) >= lengths[:, None]] = 0
    return SimpleNamespace(inter_feat={model.ITEM_SEQ: seqs, model.ITEM_SEQ_LEN: lengths,
                                       model.POS_ITEM_ID: torch.randint(1, N_ITEMS, (12,), generator=generator)})


ANCHOR_ROWS = [{"epoch": 3, "file": "epoch_3.pt"}, {"epoch": 7, "file": "epoch_7.pt"}]


def make_trainer(tmp_path, anchor_rows=ANCHOR_ROWS, **overrides):
    config = config_for(tmp_path, **overrides)
    model = new_model(config, 0)
    teacher = new_model(config, 1)
    anchors = {row["epoch"]: new_model(config, 100 + row["epoch"]).state_dict() for row in anchor_rows}
    summary = SyntheticSummary(item_factor_from_text(Catalog().item_text_embeddings), 4, LENGTH, 3, 3)
    return DistillationLoop(config, model, teacher, summary, real_samples(model), FakeRealRun(anchors),
                            anchor_rows, MODES["coupled"], BomeSolver)


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_anchor_reset_loads_the_weights_of_the_anchor_it_names(tmp_path):
    trainer = make_trainer(tmp_path)
    anchors = trainer.real_run.states
    trainer.outer_step()  # the optimizer now has state to clear
    assert len(trainer.solver.optimizer.state) > 0
    trainer.real_run.loaded.clear()
    epochs = []
    for _ in range(12):
        trainer.reset_model("anchor")
        epochs.append(trainer.current_anchor)
        assert same_state(state_of(trainer.model), anchors[epochs[-1]])
        assert len(trainer.solver.optimizer.state) == 0  # Adam moments of another point are dropped
    assert trainer.real_run.loaded == epochs  # the anchor it names is the one it loaded
    assert set(epochs) == {3, 7}  # a random anchor of the pool, not always the same one


@pytest.mark.parametrize("reset", ["anchor", "random", "none"])
@pytest.mark.parametrize("start", ["anchor", "random"])
def test_step_0_starts_from_foster_start_whatever_foster_reset_is(tmp_path, monkeypatch, start, reset):
    trainer = make_trainer(tmp_path, anchor_rows=ANCHOR_ROWS[:1], foster_start=start, foster_reset=reset,
                           foster_outer_steps=1)
    built = state_of(trainer.model)
    anchor = trainer.real_run.states[3]
    starts = []
    inner_solve = trainer.solver.inner_solve
    monkeypatch.setattr(trainer.solver, "inner_solve",
                        lambda loop: starts.append(state_of(loop.model)) or inner_solve(loop))
    trainer.run(show_progress=False)
    assert len(starts) == 1 and trainer.step == 1
    if start == "anchor":
        assert same_state(starts[0], anchor)
        assert trainer.real_run.loaded == [3] and trainer.history[0]["anchor"] == 3
    else:
        assert not same_state(starts[0], built) and not same_state(starts[0], anchor)
        assert trainer.real_run.loaded == [] and trainer.history[0]["anchor"] == "random"


@pytest.mark.parametrize("start", ["anchor", "random"])
@pytest.mark.parametrize("reset, later", [("anchor", ["anchor", "anchor"]), ("random", ["random", "random"]),
                                          ("none", [])])
def test_resets_happen_at_step_0_and_every_r_steps(tmp_path, monkeypatch, start, reset, later):
    trainer = make_trainer(tmp_path, foster_start=start, foster_reset=reset, foster_reset_interval=3)
    modes = []
    monkeypatch.setattr(trainer, "reset_model", modes.append)
    for step in range(8):
        trainer.step = step
        trainer.maybe_reset()
    assert modes == [start] + later  # steps 0, 3, 6


def test_unknown_start_mode_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="foster_start"):
        make_trainer(tmp_path, foster_start="none")


def test_one_outer_step_moves_model_and_synthetic_factors_along_the_bome_direction(tmp_path, monkeypatch):
    """theta and phi both take the step -lr * (grad f + lambda * grad q) that bome_direction returns."""
    trainer = make_trainer(tmp_path, foster_reset="none", foster_eta=10.0)  # eta large: lambda > 0
    trainer.outer_step()  # step 0: the start reset
    lr = 0.05
    trainer.solver.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=lr)
    trainer.synthetic_optimizer = torch.optim.SGD(trainer.summary.trainable_parameters(), lr=lr)
    calls = []
    real_direction = bome_module.bome_direction

    def spy(grad_f, grad_q, params, eta):
        out = real_direction(grad_f, grad_q, params, eta=eta)
        calls.append({"params": params, "grad_f": grad_f, "grad_q": grad_q, "direction": out[0], "lam": out[1]})
        return out

    monkeypatch.setattr(bome_module, "bome_direction", spy)
    theta = [p for p in trainer.model.parameters() if p.requires_grad]
    phi = trainer.summary.trainable_parameters()
    before = [p.detach().clone() for p in theta + phi]
    record = trainer.outer_step()

    assert len(calls) == 1
    call = calls[0]
    assert len(call["params"]) == len(theta) + len(phi)
    assert all(a is b for a, b in zip(call["params"], theta + phi))  # every model and synthetic parameter
    assert call["lam"] > 0 and record["lambda"] == call["lam"]
    for p, old, d in zip(theta + phi, before, call["direction"]):
        assert torch.allclose(p.detach(), old - lr * d, atol=1e-7)
    moved = [float((p.detach() - old).abs().sum()) for p, old in zip(theta + phi, before)]
    assert sum(moved[:len(theta)]) > 0 and sum(moved[len(theta):]) > 0  # both levels move
    # the synthetic factors follow grad f + lambda * grad q, not grad f alone
    n = len(theta)
    for d, gf, gq in zip(call["direction"][n:], call["grad_f"][n:], call["grad_q"][n:]):
        gf = torch.zeros_like(d) if gf is None else gf
        assert torch.allclose(d, gf + call["lam"] * gq, atol=1e-7)
    assert any(float(gq.abs().sum()) > 0 for gq in call["grad_q"][n:])


def test_a_step_record_holds_plain_numbers_read_from_the_step_tensors(tmp_path):
    """The record is read with one device sync (record_of): plain floats, equal to the tensors' values."""
    from recbole_foster.distill.loop import record_of

    values = {"f": torch.tensor(1.5, requires_grad=True) * 2, "q": torch.tensor(-0.25), "lambda": torch.tensor(0.0)}
    assert record_of(values, anchor=3) == {"f": 3.0, "q": -0.25, "lambda": 0.0, "anchor": 3}
    trainer = make_trainer(tmp_path, foster_reset="none")
    record = trainer.outer_step()
    numbers = {k: v for k, v in record.items() if k not in ("step", "anchor")}
    assert {"f", "bce", "fm", "dh", "q", "lambda", "entropy"} <= set(numbers)
    assert all(type(v) is float for v in numbers.values())
    assert trainer.real_seq.device == torch.device(trainer.device)  # the real samples sit on the run's device
