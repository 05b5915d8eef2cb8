"""The paper's Table 2 for one dataset: every method under one protocol, in one table.

    python benchmarks/paper_table.py --dataset=ml-100k --n_sequences=20 --seeds=3
    python benchmarks/paper_table.py --dataset=amazon-games --data_path=../shared/data \
        --config_files=benchmarks/configs/amazon-games-cpu.yaml --seeds=3

Each method is one ``run_foster.py`` run with the same dataset, split, seed, evaluation model and
``--distilled_eval_seeds=<seeds>`` (the Full run is trained once and reused by all). A method
whose ``results.json`` already exists under ``--work_dir`` is read back instead of re-run, so an
interrupted table resumes where it stopped. Any other ``--key=value`` goes to every run: use it
to scale steps and epochs down for a CPU, and say so; such a run is not the paper's setting.
Writes ``benchmarks/results/<dataset>.json`` and ``.md``.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from recbole_foster.cli import CLIError, parse_args
from recbole_foster.methods import METHODS as REGISTRY
from recbole_foster.results import REPORTED_METRICS
from recbole_foster.run import run

# table rows that are a method run with extra settings: name -> (method, options, label)
VARIANTS = {
    "foster_separate": ("foster", {"foster_targets": "separate"}, "FOSTER (separate targets)"),
    "foster_fixed": ("foster", {"foster_targets": "fixed"}, "FOSTER (fixed teacher targets)"),
    "foster_teacher": ("foster", {"foster_targets": "teacher"}, "FOSTER (teacher relabels inputs)"),
    "separate_init": ("foster", {"foster_targets": "separate", "foster_outer_steps": 0},
                      "Teacher-labelled Tucker warm start (0 steps)"),
    "teacher_init": ("foster", {"foster_targets": "teacher", "foster_outer_steps": 0},
                     "Teacher-relabelled Tucker warm start (0 steps)"),
    "td3_w40": ("td3", {"td3_window": 40, "td3_max_skip": 40}, "TD3 (window 40)"),  # TD3's published window
}
OPTIONAL = ["td3_w40"]  # run only when asked for (--methods=...): about an hour on ml-100k's CPU
METHODS = [name for name, m in REGISTRY.items() if m.small_set] + [v for v in VARIANTS if v not in OPTIONAL]
LABELS = {**{name: m.label for name, m in REGISTRY.items()}, **{k: v[2] for k, v in VARIANTS.items()}}
# methods whose result depends on which random users are drawn (``--selection_seeds``)
RANDOM_DRAWS = ("random", "random_kd")


def run_or_reuse(name, options, work_dir, variants=VARIANTS):
    """Run ``name`` (a method or a variant: (method, extra options, ...)) once; reuse its results.json."""
    out = os.path.join(work_dir, name)
    path = os.path.join(out, "results.json")
    if os.path.isfile(path):
        print(f"[{name}] reusing {path}", flush=True)
        with open(path) as f:
            return json.load(f)
    method, extra = variants.get(name.split("-sel")[0], (name.split("-sel")[0], {}))[:2]
    argv = [f"--{k}={v}" for k, v in {**options, **extra, "method": method, "output_dir": out}.items()]
    if method in ("foster", "td3"):
        argv.append("--foster_compare_random=False")  # Random-N is its own row
    print(f"[{name}] python run_foster.py {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    results = run(argv)
    print(f"[{name}] done in {time.perf_counter() - start:.0f} s", flush=True)
    return results


def pooled(results_list):
    """One result over several user draws: mean and std over every (draw, evaluation seed) run."""
    if len(results_list) == 1:
        return results_list[0]
    runs = [s["test"] for r in results_list for s in r["per_seed"]]
    test = {}
    for k in REPORTED_METRICS:
        values = np.array([run[k] for run in runs])
        test[k], test[f"{k}_std"] = float(values.mean()), float(values.std(ddof=1))
    merged = dict(results_list[0])
    merged["test"] = test
    merged["draws"] = [{k: r["test"][k] for k in ("ndcg@10", "recall@10")} for r in results_list]
    return merged


def row_of(method, results, n):
    metrics = results["test"]
    row = {"method": LABELS[method] + ("" if method == "full" else f"-{n}"),
           **{k: metrics.get(k) for k in REPORTED_METRICS}, **{f"{k}_std": metrics.get(f"{k}_std") for k in REPORTED_METRICS}}
    timings = results.get("timings", {})
    row["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    row["peak_mem_mb"] = results.get("peak_mem_mb")
    if "draws" in results:
        row["draws"] = results["draws"]
    return row


def markdown(rows, metrics=("recall@10", "ndcg@10", "recall@20", "ndcg@20")):
    lines = ["| method | " + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for row in rows:
        cells = []
        for m in metrics:
            value, std = row.get(m), row.get(f"{m}_std")
            cells.append("-" if value is None else f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--n_sequences", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per small set")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--selection_seeds", type=int, default=1,
                        help="user draws for Random and Random-KD (selection_seed = seed + i); pooled")
    parser.add_argument("--work_dir", default=None, help="per-method run folders (default outputs/paper_table/<dataset>)")
    parser.add_argument("--out", default="benchmarks/results")
    args, extra = parser.parse_known_args(argv)
    options = {"dataset": args.dataset, "n_sequences": args.n_sequences, "distilled_eval_seeds": args.seeds}
    try:  # the rest go to every run as --key=value, parsed exactly as run_foster.py parses them
        options.update(parse_args(extra))
    except CLIError as error:
        parser.error(str(error))
    work_dir = args.work_dir or os.path.join("outputs", "paper_table", args.dataset)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS + OPTIONAL))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS + OPTIONAL}")

    rows, full = [], None
    seed = int(options.get("seed", 2020))
    for method in methods:
        draws = args.selection_seeds if method in RANDOM_DRAWS else 1
        results = pooled([run_or_reuse(method, options, work_dir)] + [
            run_or_reuse(f"{method}-sel{i}", {**options, "selection_seed": seed + i}, work_dir) for i in range(1, draws)])
        if full is None:
            full = {"test": results["table"]["Full"], "timings": {}, "peak_mem_mb": None}
            rows.append(row_of("full", full, args.n_sequences))
        rows.append(row_of(method, results, args.n_sequences))
    table = markdown(rows)
    command = "python benchmarks/paper_table.py " + " ".join(argv)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.dataset}.json"), "w") as f:
        json.dump({"dataset": args.dataset, "n_sequences": args.n_sequences, "eval_seeds": args.seeds,
                   "selection_seeds": args.selection_seeds,
                   "overrides": {k: v for k, v in options.items() if k not in ("dataset", "n_sequences")},
                   "command": command, "rows": rows}, f, indent=2)
    with open(os.path.join(args.out, f"{args.dataset}.md"), "w") as f:
        f.write(f"<!-- {command} -->\n{table}\n")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
