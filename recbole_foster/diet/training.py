"""How a DIET run trains and judges: RecBole's trainer for models, the package's evaluation for sets.

* Models (the stage model DIET keeps, Full-s, Fine-tune) train with RecBole's trainer on
  RecBole dataloaders, as the real-data run does, for at most ``diet_epochs`` (and ``epochs``)
  epochs with early stopping (``stopping_step``) on the stage's selection half; DIET's stage
  model also replays the memory at every batch (:class:`ReplayTrainer`).
* Sets (DIET's memory, Reservoir-KD's reservoir) are judged as every small set of the package is:
  :func:`recbole_foster.evaluation.evaluate_training_set` trains fresh models on the set only,
  here seeing the stage's selection half as validation and its report half as "test"
  (:meth:`recbole_foster.context.RunContext.for_stage`).
"""

import os
import time
from contextlib import contextmanager

import numpy as np
import torch

from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.results import metric_subset
from recbole_foster.trainer import CheckpointSafeTrainer


class ReplayTrainer(CheckpointSafeTrainer):
    """RecBole training on the new stage's rows with the memory replayed at every batch:
    loss = the model's own loss on the batch + ``weight`` x the memory's loss (stored labels)."""

    def __init__(self, config, model, replay, weight, seed):
        super().__init__(config, model)
        self.replay, self.weight = replay, float(weight)
        self.replay_batch = min(int(config["distilled_batch_size"]), len(replay))
        self.generator = torch.Generator().manual_seed(seed)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return super()._train_epoch(train_data, epoch_idx, loss_func=self._replay_loss, show_progress=show_progress)

    def _replay_loss(self, interaction):
        rows = torch.randperm(len(self.replay), generator=self.generator)[: self.replay_batch]
        return self.model.calculate_loss(interaction) + self.weight * self.replay.loss(self.model, rows)


def fit(ctx, model, train_loader, selection, work_dir, replay=None, weight=0.0, trainer=None):
    """Train ``model`` in place (RecBole's trainer, best epoch on ``selection`` kept); returns the
    best selection metrics. ``train_loader`` None (an empty stage) leaves the model as it is.
    ``replay``: a training set replayed at every batch with ``weight``; ``trainer``: a trainer of
    ``model`` to use instead (e.g. one that records the epochs)."""
    if train_loader is None:
        return None
    config = ctx.config
    if trainer is None and replay is None:
        trainer = ctx.new_trainer(model)
    elif trainer is None:
        trainer = ReplayTrainer(config, model, replay, weight, int(config["seed"]))
    epochs = min(int(config["diet_epochs"]), int(config["epochs"]))
    trainer.epochs, trainer.eval_step = epochs, min(int(config["eval_step"]), epochs)
    os.makedirs(work_dir, exist_ok=True)
    trainer.saved_model_file = os.path.join(work_dir, "best.pth")
    _, best = trainer.fit(train_loader, selection, saved=True, verbose=False, show_progress=config["show_progress"])
    checkpoint = torch.load(trainer.saved_model_file, map_location=config["device"], weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    os.remove(trainer.saved_model_file)
    return {k: float(v) for k, v in best.items()}


def evaluate(ctx, model, loader):
    """Full-ranking metrics of ``model`` on an eval dataloader."""
    result = ctx.new_trainer(model).evaluate(loader, load_best_model=False, show_progress=False)
    return {k: float(v) for k, v in result.items()}


def _mean_std(results):
    keys = results[0].keys()
    out = {k: float(np.mean([r[k] for r in results])) for k in keys}
    out.update({f"{k}_std": float(np.std([r[k] for r in results], ddof=1)) if len(results) > 1 else 0.0
                for k in keys})
    return out


def judge_set(ctx, training_set, selection, report, test=None, desc="set"):
    """Fresh models trained on the set only (``distilled_*`` settings and seeds): mean and std of
    their best states on the report half (and on ``test``, when given), per-seed numbers."""
    view = ctx.for_stage(selection, report)
    summary = evaluate_training_set(view, training_set, desc=desc)
    per_seed = [{"seed": r["seed"], "steps": r["steps"], "selection": metric_subset(r["valid"]),
                 "report": metric_subset(r["test"])} for r in summary["per_seed"]]
    out = {"selection": metric_subset(summary["valid"]), "report": metric_subset(summary["test"]),
           "report_std": {k: summary["test"][f"{k}_std"] for k in metric_subset(summary["test"])},
           "per_seed": per_seed}
    if test is not None:
        tests = [metric_subset(evaluate(ctx, model, test)) for model in view.built_models]
        for row, result in zip(per_seed, tests):
            row["test"] = result
        out["test"] = _mean_std(tests)
    return out


class Cost:
    """Seconds and peak memory (MB; :class:`recbole_foster.memory.PeakMemory`) of a block of work."""

    def __init__(self, memory):
        self.memory, self.seconds, self.peak_mb = memory, 0.0, 0.0

    @contextmanager
    def measure(self):
        self.memory.start()
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds += time.perf_counter() - start
            self.peak_mb = max(self.peak_mb, self.memory.read_mb())

    def plus(self, *others):
        """This cost and ``others`` as one (seconds add up, the peak is the largest)."""
        total = Cost(self.memory)
        total.seconds = self.seconds + sum(o.seconds for o in others)
        total.peak_mb = max([self.peak_mb] + [o.peak_mb for o in others])
        return total
