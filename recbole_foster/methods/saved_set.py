"""``--method=eval --synthetic=PATH``: train on a saved distilled set under the run's protocol."""

import os

from recbole_foster.distill.artifacts import load_synthetic
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.methods.distillation import export_soft_set
from recbole_foster.real_run import pool_dir


def check_saved_set(ctx):
    """Before any real-data training: the set matches the data, and a teacher-labelled set is
    evaluated with the config whose teacher labelled it. Returns (summary, label mode, header)."""
    path = ctx.config["synthetic"]
    if not path:
        raise ValueError("--method=eval needs --synthetic=PATH (a synthetic.pt written by --method=foster).")
    summary, mode, header = load_synthetic(path, ctx.dataset)
    expected_run = os.path.basename(pool_dir(ctx.config, ctx.text_encoder))
    if mode.needs_teacher and header.get("teacher_run") != expected_run:
        raise ValueError(
            f"{path} is labelled by the teacher of real-data run {header.get('teacher_run')!r}, but this "
            f"config's real-data run is {expected_run!r}; evaluate it with the seed and config it was "
            "distilled with, so that the same teacher labels it.")
    return summary, mode, header


def run_eval(ctx):
    """Re-evaluate a saved distilled set (checked by :func:`check_saved_set` before the real-data run)."""
    summary, mode, header = ctx.saved_set
    path = ctx.config["synthetic"]
    soft, probs = mode.training_set(summary, ctx.teacher if mode.needs_teacher else None, ctx.config["device"])
    n = header["n_sequences"]
    ctx.config["n_sequences"] = n
    result = evaluate_training_set(ctx, soft, desc=f"eval {os.path.basename(path)}")
    return {**result, "synthetic": path, "label_mode": mode.name,
            "synthetic_header": {k: v for k, v in header.items() if k != "item_tokens"},
            "exported_atomic": export_soft_set(ctx, probs, n),
            "table": {"Full": ctx.real_run.manifest["test"], f"synthetic-{n}": result["test"]}}
