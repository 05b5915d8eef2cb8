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

from recbole_foster.distill.anchors import ensure_anchor_pool
from recbole_foster.distill.trainer import FosterDistillTrainer
from recbole_foster.methods import anchor_rows, load_teacher, new_summary
from recbole_foster.run import prepare


def probe(ctx, folder, manifest, teacher, inner_lr, steps):
    config = ctx.config
    config["foster_inner_lr"], config["foster_outer_steps"] = inner_lr, steps
    summary, _ = new_summary(ctx, int(config["n_sequences"] or 20), teacher)
    trainer = FosterDistillTrainer(config, ctx.new_model(config["seed"]), teacher, summary,
                                   ctx.train_data.dataset, folder, anchor_rows(manifest, config["foster_anchor_start"]))
    trainer.fit(show_progress=False)
    q = np.array([r["q"] for r in trainer.history])
    lam = np.array([r["lambda"] for r in trainer.history])
    return {"inner_lr": inner_lr, "steps": steps, "q_negative": float((q < 0).mean()),
            "q_mean": float(q.mean()), "q_median": float(np.median(q)), "lambda_zero": float((lam == 0).mean())}


def main(argv):
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--"))
    inner_lrs = [float(x) for x in options.pop("inner_lrs", "1e-3,1e-4").split(",")]
    steps = int(options.pop("steps", 40))
    options.setdefault("method", "foster")
    ctx = prepare(options)
    folder, manifest = ensure_anchor_pool(ctx)
    teacher = load_teacher(ctx, folder, manifest)
    rows = [probe(ctx, folder, manifest, teacher, lr, steps) for lr in inner_lrs]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
