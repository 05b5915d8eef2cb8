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

``--methods`` takes method names (and the variants below) or a preset:
``--methods=recommended`` is the table to start with: Full, Random-N (hard labels), Random-KD-N
with its top-10 teacher labels stored in the set (``label_storage=topk``, ``label_topk=10``), the
same windows with text-code labels at no more bytes (``label_storage=text_code``) and FOSTER-N.
"""

import json
import os
import sys
import time

import numpy as np

from common import command_of, parse, parser_of, write_table  # beside this script
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
    # self-contained Random-KD sets ({n}: the row's N)
    "random_kd_topk": ("random_kd", {"label_storage": "topk", "label_topk": 10}, "Random-KD-{n}, top-10 labels"),
    "random_kd_text_code": ("random_kd", {"label_storage": "text_code", "label_topk": 10},
                            "Random-KD-{n}, text-code labels (≤ top-10 bytes)"),
}
# run only when asked for (--methods=...): td3_w40 takes about an hour on ml-100k's CPU
OPTIONAL = ["td3_w40", "random_kd_topk", "random_kd_text_code"]
PRESETS = {"recommended": ["random", "random_kd_topk", "random_kd_text_code", "foster"]}
METHODS = [name for name, m in REGISTRY.items() if m.small_set] + [v for v in VARIANTS if v not in OPTIONAL]
LABELS = {**{name: m.label for name, m in REGISTRY.items()}, **{k: v[2] for k, v in VARIANTS.items()}}
# methods whose result depends on which random users are drawn (``--selection_seeds``)
RANDOM_DRAWS = ("random", "random_kd", "random_kd_topk", "random_kd_text_code")
# a row's IOR reference when the table has no Random-KD-N row: the same draws with top-k labels
REFERENCE_STAND_INS = {"random_kd": "random_kd_topk"}
# timed phases that make the small set (selection, distillation, label fitting), not data, Full or evaluation
BUILD_PHASES = ("select", "distill", "labels")


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


def _build_seconds(results):
    """Seconds to make the set once the real-data run exists (None if no phase was timed)."""
    built = [results.get("timings", {})[k] for k in BUILD_PHASES if k in results.get("timings", {})]
    return round(sum(built), 1) if built else None


def pooled(results_list):
    """One result over several user draws: mean and std over every (draw, evaluation seed) run.

    ``runs`` keeps each (draw, evaluation seed) test result, so that IOR can pair a method with
    its reference on the same users and seeds.
    """
    merged = dict(results_list[0])
    merged["runs"] = [{"draw": i, "seed": s["seed"], "test": s["test"]}
                      for i, r in enumerate(results_list) for s in r.get("per_seed", [])]
    if len(results_list) == 1:
        return merged
    test = {}
    for k in REPORTED_METRICS:
        values = np.array([run["test"][k] for run in merged["runs"]])
        test[k], test[f"{k}_std"] = float(values.mean()), float(values.std(ddof=1))
    merged["test"] = test
    merged["draws"] = [{**{k: r["test"][k] for k in ("ndcg@10", "recall@10")},
                        "valid_ndcg@10": r.get("valid", {}).get("ndcg@10"), "build_seconds": _build_seconds(r),
                        "peak_mem_mb": r.get("peak_mem_mb"), "stored_label_kl": r.get("stored_label_kl")}
                       for r in results_list]  # each draw's own
    merged["artifact_bytes"] = (float(np.mean([r["artifact_bytes"] for r in results_list]))
                                if all("artifact_bytes" in r for r in results_list) else None)
    return merged


def improvement_over_random(results, reference, metric="ndcg@10"):
    """IOR (DD-Ranking): the method's metric minus its reference's, paired by (draw, seed).

    Returns mean, std and count of the paired differences and whether the mean is above zero by
    more than 2 standard errors (None when no pair exists).
    """
    ref = {(r["draw"], r["seed"]): r["test"][metric] for r in reference.get("runs", [])}
    diffs = np.array([r["test"][metric] - ref[(r["draw"], r["seed"])] for r in results.get("runs", [])
                      if (r["draw"], r["seed"]) in ref])
    if len(diffs) == 0:
        return None
    std = float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan")
    return {"mean": float(diffs.mean()), "std": std, "n": int(len(diffs)),
            "beyond_2se": bool(len(diffs) > 1 and diffs.mean() > 2 * std / np.sqrt(len(diffs)))}


def reference_of(method, results):
    """Random-N with the same label treatment: hard labels -> Random, soft labels -> Random-KD."""
    if method in RANDOM_DRAWS:
        return None
    return "random" if results.get("label_storage") in (None, "hard") else "random_kd"


def row_of(method, results, n):
    metrics = results["test"]
    own = [k for k in results.get("table", {}) if k != "Full"]  # the run's own label, e.g. K-Center-KD-20
    if own and method in REGISTRY and method != "full":
        label = own[0]
    elif "{n}" in LABELS[method]:
        label = LABELS[method].format(n=n)
    else:
        label = LABELS[method] + ("" if method == "full" else f"-{n}")
    row = {"method": label,
           **{k: metrics.get(k) for k in REPORTED_METRICS}, **{f"{k}_std": metrics.get(f"{k}_std") for k in REPORTED_METRICS}}
    timings = results.get("timings", {})
    row["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    row["peak_mem_mb"] = results.get("peak_mem_mb")
    row["family"] = results.get("family", "full data" if method == "full" else None)
    if results.get("student_init") == "teacher_embeddings" and method != "full":
        row["method"] += " (paper-compatible: student starts from real-data embeddings, leaks)"
    row["label_storage"] = results.get("label_storage")
    row["artifact_bytes"] = results.get("artifact_bytes")
    row["build_seconds"] = _build_seconds(results)  # draw 0's for a pooled row (each draw's in "draws")
    # the set's own peak (building it, training on it), not the Full run or text embedding of the same process
    phases = results.get("peak_mem_mb_per_phase") or {}
    own = [phases[k] for k in BUILD_PHASES + ("eval",) if k in phases]
    row["set_peak_mem_mb"] = max(own) if own else None
    if "draws" in results:
        row["draws"] = results["draws"]
    return row


def _bytes(value):
    if value is None:
        return "-"
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _costs(row):
    if row.get("family") == "full data":  # nothing is built; its cost is the real-data run's
        return " - | - |"
    build, peak = row.get("build_seconds"), row.get("set_peak_mem_mb")
    return f" {'not timed' if build is None else f'{build:.0f}'} | {'-' if peak is None else f'{peak:.0f}'} |"


def markdown(rows, metrics=("recall@10", "ndcg@10", "recall@20", "ndcg@20"), costs=False):
    """One row per method; ``costs`` adds the seconds to build the set (draw 0 of pooled rows) and
    the peak memory of building it and training on it."""
    cost_head = " build s | peak MB (build, train on set) |" if costs else ""
    lines = ["| method | family | bytes | " + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in metrics)
             + " | IOR N@10 (vs) |" + cost_head, "|---|---|---|" + "---|" * (len(metrics) + 1 + 2 * costs)]
    for row in rows:
        cells = []
        for m in metrics:
            value, std = row.get(m), row.get(f"{m}_std")
            cells.append("-" if value is None else f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
        ior = row.get("ior")
        ior_cell = "-" if not ior else (f"{ior['mean']:+.4f} ± {ior['std']:.4f} (n={ior['n']}, vs {row['ior_reference']})"
                                        + (" **>2SE**" if ior["beyond_2se"] else ""))
        lines.append(f"| {row['method']} | {row.get('family') or '-'} | {_bytes(row.get('artifact_bytes'))} | "
                     + " | ".join(cells) + f" | {ior_cell} |" + (_costs(row) if costs else ""))
    return "\n".join(lines)


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--n_sequences", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per small set")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"names, or a preset: {', '.join(PRESETS)}")
    parser.add_argument("--selection_seeds", type=int, default=1,
                        help="user draws for Random and Random-KD (selection_seed = seed + i); pooled")
    parser.add_argument("--draws_for_all", action="store_true",
                        help="run every method (not only Random and Random-KD) over the user draws, for IOR")
    parser.add_argument("--work_dir", default=None, help="per-method run folders (default outputs/paper_table/<dataset>)")
    parser.add_argument("--out", default="benchmarks/results")
    args, run_options = parse(parser, argv)  # the rest go to every run
    options = {"dataset": args.dataset, "n_sequences": args.n_sequences, "distilled_eval_seeds": args.seeds,
               **run_options}
    work_dir = args.work_dir or os.path.join("outputs", "paper_table", args.dataset)
    methods = PRESETS.get(args.methods) or [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS + OPTIONAL))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS + OPTIONAL}")

    rows, full, pooled_results = [], None, {}
    seed = int(options.get("seed", 2020))
    for method in methods:
        draws = args.selection_seeds if (method in RANDOM_DRAWS or args.draws_for_all) else 1
        results = pooled([run_or_reuse(method, options, work_dir)] + [
            run_or_reuse(f"{method}-sel{i}", {**options, "selection_seed": seed + i}, work_dir) for i in range(1, draws)])
        pooled_results[method] = results
        if full is None:
            full = {"test": results["table"]["Full"], "timings": {}, "peak_mem_mb": None}
            rows.append(row_of("full", full, args.n_sequences))
        rows.append(row_of(method, results, args.n_sequences))
        reference = reference_of(method, results)
        if reference not in pooled_results:
            reference = REFERENCE_STAND_INS.get(reference)
        if reference in pooled_results:
            rows[-1]["ior"] = improvement_over_random(results, pooled_results[reference])
            rows[-1]["ior_reference"] = LABELS[reference].format(n=args.n_sequences)
    table = markdown(rows)
    command = command_of("paper_table.py", argv)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.dataset}.json"), "w") as f:
        json.dump({"dataset": args.dataset, "n_sequences": args.n_sequences, "eval_seeds": args.seeds,
                   "selection_seeds": args.selection_seeds,
                   "overrides": {k: v for k, v in options.items() if k not in ("dataset", "n_sequences")},
                   "command": command, "rows": rows}, f, indent=2)
    write_table(os.path.join(args.out, f"{args.dataset}.md"), command, table)
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
