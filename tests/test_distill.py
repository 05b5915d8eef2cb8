"""FOSTER distillation: per-step cost vs catalog size, artifacts, resumption, the whole pipeline."""

import json
import os

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from recbole_foster.distill.artifacts import catalog_fingerprint, load_synthetic, save_synthetic
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text, sample_items
from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import DistillationLoop
from recbole_foster.label_modes import MODES
from recbole_foster.model.text_sasrec import TextSASRec
from recbole_foster.run import prepare, run
from tests.toy_data import as_argv, toy_options


@pytest.fixture(scope="module")
def ctx(toy_data_root, tiny_bert_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    return prepare(toy_options(toy_data_root, tiny_bert_dir, tmp, method="foster"))


class FakeCatalog:
    """Stands in for a RecBole dataset with ``n_items`` items and random text embeddings."""

    def __init__(self, n_items, dim=32):
        self.n_items = n_items
        generator = torch.Generator().manual_seed(0)
        self.item_text_embeddings = torch.randn(n_items, dim, generator=generator)
        self.item_text_embeddings[0] = 0

    def num(self, field):
        return self.n_items


class LargestNewTensor(TorchDispatchMode):
    """Records the largest tensor any operation creates while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def make_trainer(ctx, n_items, n_sequences=4):
    config = ctx.config
    config["foster_reset"] = config["foster_start"] = "random"  # no anchor files needed for a fake catalog
    catalog = FakeCatalog(n_items)
    torch.manual_seed(0)
    model, teacher = TextSASRec(config, catalog), TextSASRec(config, catalog)
    summary = SyntheticSummary(item_factor_from_text(catalog.item_text_embeddings), n_sequences,
                               config["foster_seq_len"], 4, 4)
    return DistillationLoop(config, model, teacher, summary, ctx.train_data.dataset, None, [], MODES["coupled"],
                            BomeSolver)


def measure_outer_step(trainer):
    trainer.outer_step()  # warm-up (includes the reset at step 0)
    largest, flops = LargestNewTensor(), FlopCounterMode(display=False)
    with largest, flops:
        trainer.outer_step()
    return largest.largest, flops.get_total_flops()


def test_one_outer_step_does_not_grow_with_the_catalog(ctx):
    small, large = 1_000, 200_000
    largest_small, flops_small = measure_outer_step(make_trainer(ctx, small))
    largest_large, flops_large = measure_outer_step(make_trainer(ctx, large))
    assert flops_small == flops_large > 0  # identical arithmetic at 1k and 200k items
    assert largest_large == largest_small  # no tensor scales with the catalog
    assert largest_large < large


def test_sample_items_is_uniform_distinct_and_excludes_padding():
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_items(101, 10, generator) for _ in range(2000)])
    assert all(len(torch.unique(row)) == 10 for row in draws[:50])
    assert draws.min() >= 1 and draws.max() <= 100
    counts = torch.bincount(draws.flatten(), minlength=101)[1:].float()
    assert counts.std() / counts.mean() < 0.1  # each item ~200 times
    assert torch.equal(sample_items(5, 10), torch.arange(1, 5))


def test_synthetic_set_save_load_round_trip(ctx, tmp_path):
    table = ctx.dataset.item_text_embeddings
    summary = SyntheticSummary(item_factor_from_text(table), 3, 5, 4, 4, temperature=0.2)
    with torch.no_grad():
        summary.core.normal_()
    header = {"dataset": "toy", "item_catalog": catalog_fingerprint(ctx.dataset), "label_mode": "coupled",
              "text_encoder": ctx.text_encoder, "n_sequences": 3}
    path = save_synthetic(str(tmp_path / "syn.pt"), summary, header)
    raw = torch.load(path, weights_only=True)  # plain tensors and a JSON string only
    assert json.loads(raw["header"])["dataset"] == "toy"
    loaded, mode, loaded_header = load_synthetic(path, ctx.dataset)
    assert mode.name == "coupled"
    assert loaded_header["temperature"] == 0.2 and loaded_header["n_sequences"] == 3
    assert torch.equal(loaded.full_probabilities(), summary.full_probabilities())

    header["item_catalog"] = {**header["item_catalog"], "sha256": "0" * 64}
    save_synthetic(str(tmp_path / "other.pt"), summary, header)
    with pytest.raises(ValueError, match="different item catalog"):
        load_synthetic(str(tmp_path / "other.pt"), ctx.dataset)


def test_resume_gives_the_same_result_as_an_uninterrupted_run(ctx, tmp_path):
    straight = make_trainer(ctx, 500)
    straight.run(show_progress=False)

    first = make_trainer(ctx, 500)
    first.run(show_progress=False, stop_after=4)
    path = str(tmp_path / "ckpt.pt")
    first.save_checkpoint(path)
    torch.manual_seed(123)  # a new process would start from another RNG state
    resumed = make_trainer(ctx, 500)
    resumed.load_checkpoint(path)
    resumed.run(show_progress=False)

    assert resumed.step == straight.step == ctx.config["foster_outer_steps"]
    for a, b in zip(straight.summary.parameters(), resumed.summary.parameters()):
        assert torch.equal(a, b)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])


@pytest.mark.slow
def test_full_pipeline_on_a_tiny_dataset(toy_data_root, tiny_bert_dir, tmp_path, capsys):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="foster",
                          export_atomic=str(tmp_path / "atomic"))
    results = run(as_argv(options))
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"results: {os.path.join(options['output_dir'], 'results.json')}"
    with open(os.path.join(options["output_dir"], "results.json")) as f:
        saved = json.load(f)
    assert saved["method"] == "foster" and saved["n_sequences"] == 4
    assert set(saved["table"]) == {"Full", "FOSTER-4", "Random-4"}
    assert len(saved["per_seed"]) == 2
    per_seed = np.array([s["test"]["ndcg@10"] for s in saved["per_seed"]])
    assert saved["test"]["ndcg@10"] == pytest.approx(per_seed.mean())
    assert saved["test"]["ndcg@10_std"] == pytest.approx(per_seed.std(ddof=1))
    assert {"embed", "train", "distill", "eval", "total"} <= set(saved["timings"])
    assert len(saved["history"]) == 6 and all("lambda" in h for h in saved["history"])
    assert saved["q_negative_share"] == sum(h["q"] < 0 for h in saved["history"]) / 6
    assert saved["resumed_at_step"] is None
    assert os.path.isfile(saved["synthetic"])
    # the real-data run was recorded as an anchor pool (weights-only checkpoints + manifest)
    pools = [os.path.join(r, f) for r, _, fs in os.walk(options["anchor_dir"]) for f in fs if f == "manifest.json"]
    assert len(pools) == 1
    manifest = json.load(open(pools[0]))
    assert len(manifest["checkpoints"]) == 3 and manifest["test"] == saved["full"]["test"]
    first = manifest["checkpoints"][0]
    torch.load(os.path.join(os.path.dirname(pools[0]), first["file"]), weights_only=True)
    inter = os.path.join(tmp_path, "atomic", "toy-foster4", "toy-foster4.inter")
    lines = open(inter).read().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float" and len(lines) == 1 + 4 * 6

    again = run(as_argv({**options, "method": "eval", "synthetic": saved["synthetic"],
                         "output_dir": str(tmp_path / "eval"), "export_atomic": ""}))
    assert "train" not in again["timings"] or again["timings"]["train"] == 0.0  # teacher reused
    assert again["n_sequences"] == 4 and set(again["test"]) >= {"ndcg@10", "recall@20"}

    resumed = run(as_argv({**options, "resume": "True", "foster_compare_random": "False"}))
    assert resumed["history"][-1]["step"] == 5  # nothing left to do: the checkpoint was final
    assert resumed["resumed_at_step"] == 6  # its distill time covers only the steps after this one


def test_warm_start_reproduces_real_sequences():
    table = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))  # distinct items
    summary = SyntheticSummary(item_factor_from_text(table), 3, 5, 3, 5)  # full rank: 3 x 5 codes
    seqs = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0], [9, 10, 11, 12, 13]])
    fit = summary.fit_to_sequences(seqs, steps=300, n_sampled=8, generator=torch.Generator().manual_seed(0))
    assert fit == 1.0
    top1 = summary.full_probabilities().argmax(-1)
    assert torch.equal(top1[seqs > 0], seqs[seqs > 0])


def test_anchor_rows_skip_early_epochs_and_overfitted_ones():
    from recbole_foster.real_run import anchor_rows

    manifest = {"best_epoch": 10, "checkpoints": [{"epoch": e} for e in range(15)]}
    assert [r["epoch"] for r in anchor_rows(manifest, 0.5)] == [5, 6, 7, 8, 9, 10]
    assert [r["epoch"] for r in anchor_rows(manifest, 0.0)] == list(range(11))


def test_kmeans_ablation_uses_one_fixed_subset_of_cluster_representatives():
    from recbole_foster.distill.loop import kmeans_item_subset

    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 10
    points = torch.cat([centres[i] + 0.01 * torch.randn(25, 8, generator=generator) for i in range(4)])
    table = torch.cat([torch.zeros(1, 8), points])  # row 0 = padding
    subset = kmeans_item_subset(table, 4, seed=0)
    assert len(subset) == 4 and subset.min() >= 1
    clusters = sorted(int((s - 1) // 25) for s in subset)  # one representative per cluster
    assert clusters == [0, 1, 2, 3]


def test_reset_modes(ctx):
    trainer = make_trainer(ctx, 300)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.reset_model("random")  # random re-initialisation
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    ctx.config["foster_reset"] = "bogus"
    with pytest.raises(ValueError, match="foster_reset"):
        DistillationLoop(ctx.config, trainer.model, trainer.teacher, trainer.summary,
                         ctx.train_data.dataset, None, [], MODES["coupled"], BomeSolver)
    ctx.config["foster_reset"] = "random"


def test_kl_through_underflowed_targets_keeps_gradients_finite(ctx):
    """Peaked synthetic distributions underflow to exact zeros; their gradient must not be NaN."""
    from recbole_foster.training_sets import soft_sequence_loss

    model = ctx.new_model(0)
    items = torch.arange(1, 6)
    logits = torch.zeros(2, 4, 5)
    logits[..., 0] = 500.0  # every other item has probability exp(-500) = 0 in float32
    logits.requires_grad_(True)
    log_probs = torch.log_softmax(logits, -1)
    assert (log_probs.exp() == 0).any()
    loss = soft_sequence_loss(model, log_probs, items)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.slow
def test_random_and_random_kd_share_users_and_protocol(toy_data_root, tiny_bert_dir, tmp_path):
    base = toy_options(toy_data_root, tiny_bert_dir, tmp_path)
    plain = run(as_argv({**base, "method": "random", "output_dir": str(tmp_path / "r")}))
    kd = run(as_argv({**base, "method": "random_kd", "output_dir": str(tmp_path / "kd")}))
    assert plain["selected_users"] == kd["selected_users"] and len(kd["selected_users"]) == 4
    assert [s["seed"] for s in plain["per_seed"]] == [s["seed"] for s in kd["per_seed"]]
    assert set(kd["table"]) == {"Full", "Random-KD-4"}
    # one real-data run: Random-KD's teacher is the Full model of the Random run, reused from disk
    assert kd["table"]["Full"] == plain["table"]["Full"] and kd["timings"]["train"] == 0.0


def test_teacher_labels_are_distributions_over_real_items(ctx):
    from recbole_foster.training_sets import TeacherLabelledSequences

    teacher = ctx.new_model(0)
    with torch.no_grad():  # far from an untrained model's near-uniform predictions
        for p in teacher.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    seqs = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    labelled = TeacherLabelledSequences.from_teacher(seqs, teacher)
    probs = labelled.target_log_probs.exp()
    assert torch.allclose(probs.sum(-1), torch.ones(2, 3), atol=1e-5) and (probs[..., 0] == 0).all()
    # the labels are the teacher's own next-item distributions: the teacher (without dropout) is a
    # perfect student
    assert labelled.loss(teacher.eval(), torch.tensor([0, 1])).item() == pytest.approx(0.0, abs=1e-5)
    student = ctx.new_model(1).eval()
    with torch.no_grad():
        log_pred = torch.log_softmax(student.scores(student.encode(seqs[:, :-1]))[..., 1:], -1)
    mask = (seqs[:, 1:] > 0) & (seqs[:, :-1] > 0)
    target = probs[..., 1:][mask]
    expected = (target * (target.log() - log_pred[mask])).sum(-1).mean()  # KL(teacher || student)
    loss = labelled.loss(student, torch.tensor([0, 1])).item()
    assert loss > 1e-3 and loss == pytest.approx(float(expected), rel=1e-4)


def test_separate_targets_fit_labels_and_survive_save_load(ctx, tmp_path):
    """foster_targets=separate: Y gets its own core, fitted to given labels without moving X."""
    table = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    summary = SyntheticSummary(item_factor_from_text(table), 3, 5, 3, 5, separate_targets=True)
    coupled = SyntheticSummary(item_factor_from_text(table), 3, 5, 3, 5)
    assert coupled.soft_batch(torch.arange(1, 40))[1] is None
    seqs = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0], [9, 10, 11, 12, 13]])
    summary.fit_to_sequences(seqs, steps=300, n_sampled=8, generator=torch.Generator().manual_seed(0))
    inputs_before = summary.full_log_probabilities().clone()
    # labels the factorisation can express: soft distributions from arbitrary codes of width 16
    codes = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(1)) * 3
    wanted = codes @ summary.item_factor.T

    def labels(items):
        return torch.log_softmax(wanted[..., items], -1)

    mask = seqs > 0
    start_kl = summary.fit_targets(labels, mask, steps=1, n_sampled=39)
    end_kl = summary.fit_targets(labels, mask, steps=300, n_sampled=39)
    assert end_kl < 0.2 * start_kl
    assert torch.equal(summary.full_log_probabilities(), inputs_before)  # inputs untouched
    inputs, targets = summary.soft_batch(torch.arange(1, 40))
    assert not torch.allclose(inputs, targets)

    header = {"dataset": "toy", "item_tokens": None, "n_sequences": 3, "label_mode": "separate"}
    path = save_synthetic(str(tmp_path / "sep.pt"), summary, header, standalone=True)
    loaded, mode, _ = load_synthetic(path)
    assert loaded.separate_targets and mode.name == "separate"
    assert torch.equal(loaded.full_target_log_probabilities(), summary.full_target_log_probabilities())


def test_fixed_targets_stay_put_while_the_inputs_are_distilled(ctx, tmp_path):
    """foster_targets=fixed: outer steps move U, T, G (the inputs) but never the labels."""
    trainer = make_trainer(ctx, 300)
    table = FakeCatalog(300).item_text_embeddings
    summary = SyntheticSummary(item_factor_from_text(table), 4, ctx.config["foster_seq_len"], 4, 4,
                               separate_targets=True)
    with torch.no_grad():
        summary.target_core.normal_()  # labels that differ from the inputs
    summary.freeze_targets()
    trainer.summary = summary
    trainer.synthetic_optimizer = torch.optim.AdamW(summary.trainable_parameters(), lr=0.05)
    assert all(p is not summary.target_core for p in summary.trainable_parameters())
    labels_before = summary.full_target_log_probabilities().clone()
    inputs_before = summary.full_log_probabilities().clone()
    for _ in range(3):
        trainer.outer_step()
    assert torch.equal(summary.full_target_log_probabilities(), labels_before)
    assert not torch.allclose(summary.full_log_probabilities(), inputs_before)

    path = save_synthetic(str(tmp_path / "fixed.pt"), summary,
                          {"dataset": "toy", "item_tokens": None, "label_mode": "fixed"}, standalone=True)
    loaded, mode, _ = load_synthetic(path)
    assert mode.name == "fixed"
    assert loaded.targets_frozen
    assert torch.equal(loaded.full_target_log_probabilities(), labels_before)
    with pytest.raises(ValueError, match="separate_targets"):
        SyntheticSummary(item_factor_from_text(table), 4, 5, 4, 4).freeze_targets()


def test_teacher_targets_follow_the_inputs_and_carry_their_gradient(ctx):
    """foster_targets=teacher: each label is the teacher's prediction from the current prefix."""
    from recbole_foster.training_sets import teacher_soft_labels

    trainer = make_trainer(ctx, 300)
    trainer.label_mode = MODES["teacher"]
    items = torch.arange(1, 300, 7)
    log_probs, targets = trainer.soft_batch(items)
    # label of position 2 = teacher's prediction after reading positions 0 and 1 only
    hidden = trainer.teacher.encode_soft(log_probs[:, :2].exp(), items)[:, -1]
    assert torch.allclose(targets[:, 2], torch.log_softmax(trainer.teacher.scores(hidden, items), -1), atol=1e-5)
    # a label moves when an earlier input moves, and its gradient reaches the synthetic factors
    grads = torch.autograd.grad(targets[:, 1:].exp().pow(2).sum(), trainer.summary.trainable_parameters(),
                                allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in trainer.teacher.parameters())
    with torch.no_grad():
        trainer.summary.core.mul_(3.0)
    assert not torch.allclose(trainer.soft_batch(items)[1][:, 1:], targets[:, 1:].detach())
    assert torch.equal(teacher_soft_labels(trainer.teacher, log_probs, items)[:, 0], log_probs[:, 0])


@pytest.mark.slow
def test_teacher_target_set_is_relabelled_by_the_same_teacher_on_eval(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="foster", foster_targets="teacher",
                          foster_compare_random="False")
    first = run(as_argv(options))
    again = run(as_argv({**options, "method": "eval", "synthetic": first["synthetic"],
                         "output_dir": str(tmp_path / "eval")}))
    assert again["test"] == first["test"]  # same inputs, same teacher labels, same evaluation seeds
    other_seed = {**options, "method": "eval", "synthetic": first["synthetic"], "seed": "7",
                  "output_dir": str(tmp_path / "eval7")}
    with pytest.raises(ValueError, match="same teacher"):
        run(as_argv(other_seed))


def test_a_second_run_waits_for_the_pool_being_trained_and_reuses_it(ctx, monkeypatch, tmp_path):
    """Two runs side by side: the one that finds the pool locked waits, then reuses it."""
    import fcntl
    import threading

    from recbole_foster import real_run as anchors

    monkeypatch.setattr(anchors, "pool_dir", lambda config, encoder: str(tmp_path / "pool"))
    folder = anchors.pool_dir(ctx.config, ctx.text_encoder)
    os.makedirs(folder, exist_ok=True)
    trained = []
    monkeypatch.setattr(anchors, "_record_real_run", lambda c, f: trained.append(f) or {"complete": True})
    holder = open(os.path.join(folder, ".lock"), "w")
    fcntl.flock(holder, fcntl.LOCK_EX)  # "another run" is training
    result = {}
    waiter = threading.Thread(target=lambda: result.update(pool=anchors.ensure_real_run(ctx)))
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive()  # blocked on the lock, not training a second copy
    anchors.write_manifest(folder, {"complete": True, "test": {}})
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    waiter.join()
    assert trained == [] and result["pool"].manifest["complete"]


@pytest.mark.slow
def test_selection_seed_draws_other_users_from_the_same_full_run(toy_data_root, tiny_bert_dir, tmp_path):
    base = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random", distilled_eval_seeds=1)
    first = run(as_argv({**base, "output_dir": str(tmp_path / "a")}))
    other = run(as_argv({**base, "output_dir": str(tmp_path / "b"), "selection_seed": 7}))
    assert first["selected_users"] != other["selected_users"]
    assert other["table"]["Full"] == first["table"]["Full"] and other["timings"]["train"] == 0.0  # reused
    assert [s["seed"] for s in other["per_seed"]] == [s["seed"] for s in first["per_seed"]]
