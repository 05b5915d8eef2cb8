"""How a small training set (distilled or selected) is judged: train a fresh model on it only.

A fresh TextSASRec (new seed; only the frozen text embeddings are shared with anything trained
on real data) is trained on the sequences alone, model selection uses the *real* validation
split, and the selected model is scored with RecBole's full-ranking evaluation on the real test
split. Every method (FOSTER, Random, coresets) goes through :func:`evaluate_training_set`, so
their numbers differ only in the training sequences.

The best state is chosen by the rule RecBole's ``Trainer.fit`` uses for real-data runs
(``recbole.utils.early_stopping`` on ``valid_metric``, honouring ``valid_metric_bigger``): a check
that reaches the best score so far (ties included) becomes the best state, and training stops
after ``distilled_patience`` checks in a row that do not (RecBole's ``stopping_step`` + 1).

Checks and the test go through :mod:`recbole_foster.scoring` (``distilled_fast_scorer``, default
True): RecBole's metrics on RecBole's full ranking, equal to ``Trainer.evaluate``'s, without
re-collating the data and re-embedding every item per batch. ``distilled_fast_scorer: False`` (or
metrics beyond the top-k ranking) uses RecBole's ``Trainer.evaluate`` itself.
"""

import copy

import numpy as np
import torch
from recbole.utils import calculate_valid_score, early_stopping
from tqdm import tqdm

from recbole_foster.scoring import scorer_for


def selection_data(ctx):
    """The validation data that picks the best state of a small-set training: RecBole's whole
    validation split, or (``distilled_valid_subsample`` > 0) a fixed, seeded subsample of that
    many of its rows, so that frequent checks stay cheap on large datasets. Test is always whole."""
    if getattr(ctx, "_selection_data", None) is not None:
        return ctx._selection_data
    n, full = ctx.config["distilled_valid_subsample"], ctx.valid_data
    if n and n < len(full.dataset):
        dataset = full.dataset
        generator = torch.Generator().manual_seed(ctx.config["seed"])
        rows = torch.randperm(len(dataset), generator=generator)[:n].sort().values
        full = type(full)(ctx.config, dataset.copy(dataset.inter_feat[rows]), full._sampler, shuffle=False)
    ctx._selection_data = full
    return full


STUDENT_INITS = ("fresh", "teacher_embeddings")


def copy_teacher_embeddings(model, teacher):
    """TD3's public evaluation (the *paper-compatible* protocol): the student keeps the item
    representation and position embeddings of the model trained on all real data and learns the
    rest from the small set. It leaks real-data training into the student; never a default."""
    own = model.state_dict()
    taken = {k: v for k, v in teacher.state_dict().items() if k.startswith(("item_embedding.", "position_embedding."))}
    own.update(taken)
    model.load_state_dict(own)
    return sorted(taken)


def _evaluator(ctx, model):
    """``evaluate(data)`` -> RecBole's metrics of ``model`` on ``data``: the fast scorer where it
    applies (see the module docstring), else RecBole's ``Trainer.evaluate`` (built once, on need)."""
    trainer = None

    def evaluate(data):
        nonlocal trainer
        scorer = scorer_for(ctx.config, data) if ctx.config["distilled_fast_scorer"] is not False else None
        if scorer is not None:
            return scorer.evaluate(model)
        if trainer is None:
            trainer = ctx.new_trainer(model)
        return trainer.evaluate(data, load_best_model=False, show_progress=False)

    return evaluate


def train_and_select(ctx, sequences, seed, desc="eval"):
    """Train a fresh model on ``sequences``; return (best valid metrics, test metrics, steps).

    ``distilled_student_init: teacher_embeddings`` starts the student from the teacher's item and
    position embeddings instead (see :func:`copy_teacher_embeddings`).
    """
    config = ctx.config
    model = ctx.new_model(seed)
    init = config["distilled_student_init"] or "fresh"
    if init not in STUDENT_INITS:
        raise ValueError(f"distilled_student_init must be one of {STUDENT_INITS}, got {init!r}.")
    if init == "teacher_embeddings":
        copy_teacher_embeddings(model, ctx.teacher)
    evaluate = _evaluator(ctx, model)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["distilled_lr"], weight_decay=config["distilled_weight_decay"]
    )
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(config["distilled_batch_size"], len(sequences))
    metric = config["valid_metric"]
    bigger = config["valid_metric_bigger"] is not False  # RecBole's default: bigger is better
    best_score, best_state, best_valid, bad_checks = (-np.inf if bigger else np.inf), None, None, 0
    max_step = config["distilled_patience"] - 1  # early_stopping stops after max_step + 1 bad checks
    steps = config["distilled_steps"]
    progress = tqdm(range(1, steps + 1), desc=f"{desc} (seed {seed})", leave=False, mininterval=2)
    for step in progress:
        model.train()
        rows = torch.randperm(len(sequences), generator=generator)[:batch_size]
        loss = sequences.loss(model, rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % config["distilled_eval_every"] == 0 or step == steps:
            valid = evaluate(selection_data(ctx))
            score = float(calculate_valid_score(valid, metric.lower()))
            progress.set_postfix({"loss": f"{loss.item():.4f}", metric: f"{score:.4f}"})
            best_score, bad_checks, stop, improved = early_stopping(score, best_score, bad_checks, max_step, bigger)
            if improved:
                best_valid, best_state = valid, copy.deepcopy(model.state_dict())
            if stop:
                break
    model.load_state_dict(best_state)
    test = evaluate(ctx.test_data)
    return {k: float(v) for k, v in best_valid.items()}, {k: float(v) for k, v in test.items()}, step


def evaluate_training_set(ctx, sequences, desc="eval"):
    """Mean and std over ``distilled_eval_seeds`` evaluation seeds, plus the per-seed numbers."""
    config = ctx.config
    seeds = [config["seed"] + 1000 + i for i in range(config["distilled_eval_seeds"])]
    per_seed = []
    with ctx.timed("eval"):
        for seed in seeds:
            valid, test, steps = train_and_select(ctx, sequences, seed, desc=desc)
            per_seed.append({"seed": seed, "valid": valid, "test": test, "steps": steps})
    summary = {}
    for split in ("valid", "test"):
        keys = per_seed[0][split].keys()
        values = {k: np.array([run[split][k] for run in per_seed]) for k in keys}
        summary[split] = {k: float(v.mean()) for k, v in values.items()}
        summary[split].update({f"{k}_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()})
    summary["per_seed"] = per_seed
    summary["eval_seeds"] = seeds
    return summary
