"""Does FOSTER's inner loop actually lower the inner loss? (a probe for issue #3)

BOME's value gap q = L_in(theta) - L_in(theta_T) assumes theta_T (T inner steps from theta on the
synthetic data) is *better* on the synthetic data than theta, i.e. q >= 0. This probe builds
the FOSTER trainer exactly as ``run_foster.py --method=foster`` does (same warm start, anchors,
seed) and, for each inner learning rate, runs a few outer steps and reports how often q < 0.

    python benchmarks/probe_inner_gap.py --inner_lrs=1e-3,1e-4,1e-5 --steps=40 --foster_targets=teacher

Any other ``--key=value`` goes to run_foster's config (dataset, data_path, ...).
"""

import json
import sys

import numpy as np

from recbole_foster.cli import parse_args
from recbole_foster.distill.trainer import FosterDistillTrainer
from recbole_foster.label_modes import label_mode_of
from recbole_foster.methods.distillation import new_summary
from recbole_foster.run import prepare, prepare_method_inputs


def probe(ctx, inner_lr, steps):
    config = ctx.config
    config["foster_inner_lr"], config["foster_outer_steps"] = inner_lr, steps
    label_mode = label_mode_of(config)
    summary, _ = new_summary(ctx, label_mode)
    trainer = FosterDistillTrainer(config, ctx.new_model(config["seed"]), ctx.teacher, summary, ctx.train_data.dataset,
                                   ctx.real_run, ctx.real_run.anchors(config["foster_anchor_start"]), label_mode)
    trainer.fit(show_progress=False)
    q = np.array([r["q"] for r in trainer.history])
    lam = np.array([r["lambda"] for r in trainer.history])
    return {"inner_lr": inner_lr, "steps": steps, "q_negative": float((q < 0).mean()),
            "q_mean": float(q.mean()), "q_median": float(np.median(q)), "lambda_zero": float((lam == 0).mean())}


def main(argv):
    options = parse_args(argv)
    inner_lrs = [float(x) for x in options.pop("inner_lrs", "1e-3,1e-4").split(",")]
    steps = int(options.pop("steps", 40))
    options.setdefault("method", "foster")
    ctx = prepare(options)
    prepare_method_inputs(ctx)
    rows = [probe(ctx, lr, steps) for lr in inner_lrs]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
