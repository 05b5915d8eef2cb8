"""Learning curve of a distillation: validation NDCG@10 of its set against outer steps.

    python benchmarks/learning_curve.py --dataset=amazon-games --data_path=../shared/data \
        --config_files=benchmarks/configs/amazon-games-temporal-cpu.yaml --max_steps=10000 --every=1000

One distillation (``--method=foster`` or ``td3``) runs to each point of the schedule (0, every,
2 x every, ..., max_steps) by resuming its own checkpoint (``--resume``), so the curve costs one
run of ``max_steps`` steps plus one small-set evaluation per point. Each point's set is judged
with ``--seeds`` evaluation seeds; the curve is read on *validation* (``distilled_valid_subsample``
rows if the config sets it), and test is recorded beside it but never used to choose. Also
records s/step (distillation time of the steps since the previous point) and s/eval (one
small-set evaluation, per seed). ``--reference=LABEL:results.json`` draws another set's
validation NDCG@10 as a line (e.g. Random-KD-20). Resumable: a finished point is read back.
Writes ``<out>/<dataset>-<method>.{json,png}``.
"""

import json
import os
import shutil
import sys

from common import command_of, figure, parse, parser_of, save  # beside this script
from recbole_foster.run import run
from recbole_foster.methods.distillation import CHECKPOINT_FILE


def point(steps, results, previous_steps, seeds):
    timings = results["timings"]
    new_steps = steps - previous_steps
    return {"steps": steps, "valid_ndcg@10": results["valid"]["ndcg@10"],
            "valid_ndcg@10_std": results["valid"].get("ndcg@10_std"),
            "test_ndcg@10": results["test"]["ndcg@10"], "test_ndcg@10_std": results["test"].get("ndcg@10_std"),
            "s_per_step": timings.get("distill", 0.0) / new_steps if new_steps else None,
            "s_per_eval": timings.get("eval", 0.0) / seeds, "peak_mem_mb": results.get("peak_mem_mb")}


def plot(points, references, path, title):
    fig, ax = figure((7, 4))
    steps = [p["steps"] for p in points]
    ax.errorbar(steps, [p["valid_ndcg@10"] for p in points], yerr=[p["valid_ndcg@10_std"] or 0 for p in points],
                marker="o", label="validation (read)")
    ax.plot(steps, [p["test_ndcg@10"] for p in points], linestyle=":", color="gray", label="test (recorded only)")
    for (label, value), color in zip(references.items(), ("tab:red", "tab:green", "tab:purple")):
        ax.axhline(value, color=color, linestyle="--", label=f"{label} (validation)")
    ax.set_xlabel("outer steps")
    ax.set_ylabel("NDCG@10")
    save(fig, path, title, legend={"fontsize": 8})


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--method", default="foster", choices=("foster", "td3"))
    parser.add_argument("--max_steps", type=int, default=10000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=1, help="evaluation seeds per point")
    parser.add_argument("--reference", action="append", default=[], metavar="LABEL:RESULTS_JSON")
    parser.add_argument("--work_dir", default=None, help="default outputs/learning_curve/<dataset>-<method>")
    parser.add_argument("--out", default="benchmarks/results/learning-curve")
    args, options = parse(parser, argv)
    if args.every < 1 or args.max_steps < args.every:
        parser.error("--every must be >= 1 and --max_steps >= --every")
    name = f"{args.dataset}-{args.method}"
    work_dir = args.work_dir or os.path.join("outputs", "learning_curve", name)
    run_dir, points_dir = os.path.join(work_dir, "run"), os.path.join(work_dir, "points")
    os.makedirs(points_dir, exist_ok=True)
    references = {}
    for spec in args.reference:
        label, _, path = spec.partition(":")
        with open(path) as f:
            references[label] = json.load(f)["valid"]["ndcg@10"]

    points, previous = [], 0
    for steps in range(0, args.max_steps + 1, args.every):
        saved = os.path.join(points_dir, f"{steps}.json")
        if os.path.isfile(saved):
            with open(saved) as f:
                results = json.load(f)
        else:
            resume = os.path.isfile(os.path.join(run_dir, CHECKPOINT_FILE)) and steps > 0
            argv_run = [f"--{k}={v}" for k, v in {
                **options, "dataset": args.dataset, "method": args.method, "foster_outer_steps": steps,
                "distilled_eval_seeds": args.seeds, "foster_compare_random": False, "resume": resume,
                "output_dir": run_dir}.items()]
            print(f"[{steps} steps] python run_foster.py {' '.join(argv_run)}", flush=True)
            results = run(argv_run)
            shutil.copy(os.path.join(run_dir, "results.json"), saved)
        points.append(point(steps, results, previous, args.seeds))
        previous = steps
        print(f"[{steps} steps] valid N@10 {points[-1]['valid_ndcg@10']:.4f}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, name)
    command = command_of("learning_curve.py", argv)
    with open(stem + ".json", "w") as f:
        json.dump({"dataset": args.dataset, "method": args.method, "eval_seeds": args.seeds,
                   "overrides": options, "references_valid_ndcg@10": references, "command": command,
                   "points": points}, f, indent=2)
    plot(points, references, stem + ".png",
         f"{args.dataset}: {args.method} set, validation NDCG@10 vs outer steps ({args.seeds} eval seed(s))")
    print(json.dumps(points[-1]))


if __name__ == "__main__":
    main(sys.argv[1:])
