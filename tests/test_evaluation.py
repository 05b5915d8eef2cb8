"""Judging a small training set: the model tested is the one of the best validation check."""

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from recbole_foster import evaluation
from recbole_foster.evaluation import evaluate_training_set, train_and_select

VALID, TEST = object(), object()


class OneWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


class PullTowards10:
    """A "training set" whose loss moves ``w`` at every step, so every check sees other weights."""

    def __len__(self):
        return 4

    def loss(self, model, rows):
        return ((model.w - 10.0) ** 2).sum()


class ScriptedTrainer:
    """Validation scores from a script; records the weights each evaluation saw."""

    def __init__(self, model, scores):
        self.model, self.scores = model, iter(scores)
        self.valid_weights, self.test_weights = [], []

    def evaluate(self, data, load_best_model=True, show_progress=False):
        assert load_best_model is False  # the selected state is loaded by train_and_select itself
        weight = float(self.model.w.detach())
        if data is VALID:
            self.valid_weights.append(weight)
            score = next(self.scores)
            return {"ndcg@10": score, "recall@10": 2 * score, "averagepopularity@10": -score}
        assert data is TEST
        self.test_weights.append(weight)
        return {"ndcg@10": weight, "recall@10": 0.0}


def fake_ctx(scores, steps, eval_every, patience=5, metric="NDCG@10", bigger=True):
    trainers = []

    def new_trainer(model):
        trainers.append(ScriptedTrainer(model, scores))
        return trainers[-1]

    config = {"distilled_lr": 0.1, "distilled_weight_decay": 0.0, "distilled_batch_size": 4,
              "valid_metric": metric, "valid_metric_bigger": bigger, "distilled_steps": steps,
              "distilled_eval_every": eval_every,
              "distilled_patience": patience, "distilled_valid_subsample": 0, "distilled_student_init": "fresh",
              "distilled_fast_scorer": True}  # not full-sort loaders: the trainer is asked
    ctx = SimpleNamespace(config=config, new_model=lambda seed: OneWeight(), new_trainer=new_trainer,
                          valid_data=VALID, test_data=TEST)
    return ctx, trainers


def test_the_best_validation_check_is_tested_not_the_last():
    ctx, trainers = fake_ctx([0.1, 0.4, 0.2, 0.3, 0.35], steps=10, eval_every=2)
    valid, test, steps = train_and_select(ctx, PullTowards10(), seed=0)
    trainer = trainers[0]
    assert len(set(trainer.valid_weights)) == 5  # the weights moved between the checks
    assert trainer.test_weights == [trainer.valid_weights[1]]  # the state of the check at step 4
    assert valid == {"ndcg@10": 0.4, "recall@10": 0.8, "averagepopularity@10": -0.4}
    assert test["ndcg@10"] == trainer.valid_weights[1] and steps == 10


def test_patience_stops_training_and_keeps_the_best_state():
    ctx, trainers = fake_ctx([0.1, 0.5, 0.4, 0.3, 0.9, 0.9], steps=20, eval_every=2, patience=2)
    valid, _, steps = train_and_select(ctx, PullTowards10(), seed=0)
    trainer = trainers[0]
    assert len(trainer.valid_weights) == 4 and steps == 8  # two checks without improvement, then stop
    assert trainer.test_weights == [trainer.valid_weights[1]] and valid["ndcg@10"] == 0.5


def test_the_last_step_is_checked_when_steps_is_not_a_multiple_of_eval_every():
    ctx, trainers = fake_ctx([0.1, 0.2, 0.3], steps=5, eval_every=2)
    _, _, steps = train_and_select(ctx, PullTowards10(), seed=0)
    trainer = trainers[0]
    assert len(trainer.valid_weights) == 3 and steps == 5  # checks at steps 2, 4 and 5
    assert trainer.test_weights == [trainer.valid_weights[2]]


def test_the_configured_valid_metric_picks_the_state():
    ctx, trainers = fake_ctx([0.1, 0.4, 0.2], steps=6, eval_every=2, metric="Recall@10")
    valid, _, _ = train_and_select(ctx, PullTowards10(), seed=0)
    assert valid["recall@10"] == 0.8 and trainers[0].test_weights == [trainers[0].valid_weights[1]]


def test_a_metric_where_smaller_is_better_selects_the_smallest_value():
    """valid_metric_bigger: False (here -score): the check with the smallest value wins."""
    ctx, trainers = fake_ctx([0.1, 0.4, 0.2, 0.3, 0.35], steps=10, eval_every=2, metric="AveragePopularity@10",
                             bigger=False)
    valid, test, steps = train_and_select(ctx, PullTowards10(), seed=0)
    trainer = trainers[0]
    assert valid["averagepopularity@10"] == -0.4  # the smallest of -0.1, -0.4, -0.2, -0.3, -0.35
    assert trainer.test_weights == [trainer.valid_weights[1]] and steps == 10


def test_patience_counts_checks_that_do_not_reach_the_best_when_smaller_is_better():
    # values -0.1, -0.5, -0.4, -0.3: two checks above the best -0.5, then stop (patience 2)
    ctx, trainers = fake_ctx([0.1, 0.5, 0.4, 0.3, 0.9], steps=20, eval_every=2, patience=2,
                             metric="AveragePopularity@10", bigger=False)
    valid, _, steps = train_and_select(ctx, PullTowards10(), seed=0)
    assert steps == 8 and valid["averagepopularity@10"] == -0.5
    assert trainers[0].test_weights == [trainers[0].valid_weights[1]]


def test_a_tie_keeps_the_later_state_and_restarts_patience_as_recbole_does():
    """RecBole's early_stopping (the rule of the real-data run): a check equal to the best is a new best."""
    ctx, trainers = fake_ctx([0.1, 0.5, 0.4, 0.5, 0.3, 0.2, 0.1], steps=20, eval_every=2, patience=2)
    valid, _, steps = train_and_select(ctx, PullTowards10(), seed=0)
    trainer = trainers[0]
    assert steps == 12  # the tie at step 8 restarted the count: two checks more, then stop
    assert trainer.test_weights == [trainer.valid_weights[3]] and valid["ndcg@10"] == 0.5


def test_evaluation_reports_mean_and_sample_std_over_the_evaluation_seeds(monkeypatch):
    per_seed_ndcg = {2020 + 1000: 0.1, 2020 + 1001: 0.4, 2020 + 1002: 0.25}

    def scripted(ctx, sequences, seed, desc="eval"):
        return {"ndcg@10": per_seed_ndcg[seed] / 2}, {"ndcg@10": per_seed_ndcg[seed]}, 7

    monkeypatch.setattr(evaluation, "train_and_select", scripted)
    ctx = SimpleNamespace(config={"seed": 2020, "distilled_eval_seeds": 3}, timed=lambda phase: nullcontext())
    result = evaluate_training_set(ctx, PullTowards10())
    values = np.array([0.1, 0.4, 0.25])
    assert result["eval_seeds"] == [3020, 3021, 3022]
    assert result["test"]["ndcg@10"] == pytest.approx(values.mean())
    assert result["test"]["ndcg@10_std"] == pytest.approx(values.std(ddof=1))
    assert result["valid"]["ndcg@10"] == pytest.approx(values.mean() / 2)
    assert [run["test"]["ndcg@10"] for run in result["per_seed"]] == values.tolist()
    ctx.config["distilled_eval_seeds"] = 1
    assert evaluate_training_set(ctx, PullTowards10())["test"]["ndcg@10_std"] == 0.0
