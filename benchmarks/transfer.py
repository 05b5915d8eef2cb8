"""Transfer: how other RecBole models learn from small sets built with TextSASRec.

    python benchmarks/transfer.py --dataset=ml-100k --seeds=3
    python benchmarks/transfer.py --dataset=amazon-games --data_path=../shared/data \
        --config_files=benchmarks/configs/amazon-games-temporal-cpu.yaml --seeds=3 --jobs=2

1. One set per method, built with ``--build_model`` (TextSASRec) and the same seed as every other
   run: ``run_foster.py --method=M``. Sets with the teacher's labels are stored with
   ``--label_storage=topk`` so that they carry their labels (self-contained): a model is then
   trained on exactly the same file, whatever its architecture. ``--set=METHOD:PATH`` uses an
   already built set instead (its results.json beside it gives the build model's row).
2. Every model is trained on all real training data (Full: the reference, cached as every
   real-data run) and on each set (``--method=eval --synthetic=SET --model=X``, ``--seeds``
   evaluation seeds, model selection on validation, full-ranking test metrics).
3. The table model x method: NDCG@10 / Recall@10 (mean ± std over evaluation seeds), Full per
   model, seconds to train each model on a set (per evaluation seed) and on all data, and per
   set the Kendall tau between the models' order on the set and on full data (over the models).

Every run is a ``run_foster.py`` process (one thread each; ``--jobs`` at once) writing its own
``results.json`` under ``--work_dir``; a run whose results.json exists is read back, so an
interrupted benchmark resumes. Any other ``--key=value`` goes to every run. Writes
``<out>/transfer-<dataset>.{json,md,png}``.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.stats import kendalltau

from common import command_of, figure, parse, parser_of, save, write_table  # beside this script
from recbole_foster.methods import METHODS as REGISTRY

MODELS = ["TextSASRec", "TextGRU4Rec", "TextNARM", "TextBERT4Rec", "SASRec", "GRU4Rec"]
SET_METHODS = ["random", "random_kd", "kcenter", "kcenter_kd", "foster"]
SELF_CONTAINED = {"label_storage": "topk"}  # stored with every set that the teacher labels
TEACHER_LABELLED = ("random_kd", "kcenter_kd", "generate_kd")
RUN_FOSTER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_foster.py")
METRICS = ("ndcg@10", "recall@10")


ASSEMBLE_ONLY = False  # --assemble_only: read what exists, run nothing


def run_or_reuse(folder, options, log_name="run.log"):
    """``run_foster.py`` with ``options`` writing to ``folder``; its results.json (read back if present).
    With ``--assemble_only``, None for a run that does not exist yet (shown as "not run")."""
    path = os.path.join(folder, "results.json")
    if not os.path.isfile(path) and ASSEMBLE_ONLY:
        return None
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        argv = [f"--{k}={v}" for k, v in {**options, "output_dir": folder}.items()]
        print(f"[run] python run_foster.py {' '.join(argv)}", flush=True)
        with open(os.path.join(folder, log_name), "w") as log:
            done = subprocess.run([sys.executable, RUN_FOSTER, *argv], stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"run failed (exit {done.returncode}); see {os.path.join(folder, log_name)}")
        print(f"[done] {folder}", flush=True)
    return read_json(path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def in_parallel(jobs, calls):
    """Run ``calls`` (zero-argument functions) ``jobs`` at a time; their results in order."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def summary(results):
    """Mean, std and per-seed values of the reported metrics of one small-set run (None: not run)."""
    if results is None:
        return None
    per_seed = results.get("per_seed", [])
    out = {"seeds": [s["seed"] for s in per_seed]}
    for metric in METRICS:
        values = [s["test"][metric] for s in per_seed]
        out[metric] = float(np.mean(values))
        out[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[f"{metric}_per_seed"] = values
    timings = results.get("timings", {})
    out["train_seconds_per_seed"] = timings.get("eval", 0.0) / max(1, len(per_seed))
    return out


def full_summary(results):
    """Full's metrics and how long it trained (from the cached real-data run's manifest; None: not run)."""
    if results is None:
        return None
    out = {metric: results["test"][metric] for metric in METRICS}
    manifest_path = os.path.join(results.get("anchor_pool") or "", "manifest.json")
    manifest = read_json(manifest_path) if os.path.isfile(manifest_path) else {}
    out["train_seconds"] = manifest.get("train_seconds")
    out["best_epoch"] = manifest.get("best_epoch")
    out["epochs_cap"] = results.get("config", {}).get("epochs")
    return out


def rank_agreement(full, per_set, models):
    """Kendall tau between the models' NDCG@10 order on a set and on full data (over the models
    with both numbers)."""
    models = [m for m in models if full[m] is not None and per_set[m] is not None]
    if len(models) < 2:
        return {"tau": None, "p_value": None, "n_models": len(models)}
    on_full = [full[m]["ndcg@10"] for m in models]
    on_set = [per_set[m]["ndcg@10"] for m in models]
    tau, p_value = kendalltau(on_full, on_set)
    return {"tau": float(tau), "p_value": float(p_value), "n_models": len(models)}


def _cell(cell, text):
    return "not run" if cell is None else text(cell)


def markdown(models, methods, labels, full, cells, agreement):
    lines = ["| model | Full | " + " | ".join(labels[m] for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for model in models:
        row = [_cell(full[model], lambda c: f"{c['ndcg@10']:.4f} / {c['recall@10']:.4f}")]
        row += [_cell(cells[m][model], lambda c: f"{c['ndcg@10']:.4f} ± {c['ndcg@10_std']:.4f} / {c['recall@10']:.4f}")
                for m in methods]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    lines.append("| Kendall tau vs Full (n models) | — | " + " | ".join(
        "—" if agreement[m]["tau"] is None else f"{agreement[m]['tau']:+.2f} (n={agreement[m]['n_models']})"
        for m in methods) + " |")
    lines += ["", "Training time (s): Full (all data) and per evaluation seed on a set", "",
              "| model | Full | " + " | ".join(labels[m] for m in methods) + " |",
              "|---|---|" + "---|" * len(methods)]
    for model in models:
        seconds = full[model]["train_seconds"] if full[model] else None
        row = ["—" if seconds is None else f"{seconds:.0f}"] + [
            _cell(cells[m][model], lambda c: f"{c['train_seconds_per_seed']:.0f}") for m in methods]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(path, models, methods, labels, full, cells, title):
    fig, ax = figure((1.6 * len(models) + 2, 4))
    width = 0.8 / (len(methods) + 1)
    x = np.arange(len(models))
    def value(cell, key):
        return np.nan if cell is None else cell[key]

    ax.bar(x, [value(full[m], "ndcg@10") for m in models], width, label="Full", color="0.3")
    for i, method in enumerate(methods, start=1):
        ax.bar(x + i * width, [value(cells[method][m], "ndcg@10") for m in models], width,
               yerr=[value(cells[method][m], "ndcg@10_std") for m in models], capsize=2, label=labels[method])
    ax.set_xticks(x + width * len(methods) / 2, models, rotation=15)
    ax.set_ylabel("test NDCG@10 (full ranking)")
    save(fig, path, title, legend={"fontsize": 7, "ncol": 3})


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default=",".join(SET_METHODS))
    parser.add_argument("--build_model", default="TextSASRec", help="the model every set is built with")
    parser.add_argument("--n_sequences", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per (model, set)")
    parser.add_argument("--label_topk", type=int, default=10, help="stored labels per position (self-contained sets)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD:PATH",
                        help="use an already built set for METHOD (repeatable)")
    parser.add_argument("--full", action="append", default=[], metavar="MODEL:RESULTS_JSON",
                        help="use the results.json of a Full run made elsewhere with the same options (repeatable)")
    parser.add_argument("--assemble_only", action="store_true",
                        help="run nothing: build the table from the runs that exist (missing ones: 'not run')")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one thread each)")
    parser.add_argument("--work_dir", default=None, help="run folders (default outputs/transfer/<dataset>)")
    parser.add_argument("--out", default="benchmarks/results")
    args, run_options = parse(parser, argv)  # the rest go to every run
    global ASSEMBLE_ONLY
    ASSEMBLE_ONLY = args.assemble_only
    options = {"dataset": args.dataset, "distilled_eval_seeds": args.seeds, **run_options}
    models = [m for m in args.models.split(",") if m]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - {name for name, m in REGISTRY.items() if m.small_set})
    if unknown:
        parser.error(f"unknown methods {unknown}")
    given = dict(item.split(":", 1) for item in args.set)
    given_full = dict(item.split(":", 1) for item in args.full)
    work_dir = args.work_dir or os.path.join("outputs", "transfer", args.dataset)

    # 1. one set per method, built with the build model (its real-data run is also the sets' teacher)
    def build(method):
        if method in given:
            folder = os.path.dirname(given[method])
            return given[method], read_json(os.path.join(folder, "results.json"))
        extra_options = {"label_topk": args.label_topk, **SELF_CONTAINED} if method in TEACHER_LABELLED else {}
        folder = os.path.join(work_dir, "sets", method)
        results = run_or_reuse(folder, {**options, **extra_options, "method": method, "model": args.build_model,
                                        "n_sequences": args.n_sequences})
        return (None, None) if results is None else (results["set_file"], results)

    built = dict(zip(methods, in_parallel(args.jobs, [(lambda m=m: build(m)) for m in methods])))

    # 2. every model on every set (the build model's row is the build run's own evaluation), then
    # every model on all data; a set trains a model without that model's real-data run
    def evaluate(method, model):
        path, build_results = built[method]
        if path is None:  # the set was not built (--assemble_only)
            return None
        if model == args.build_model:
            return build_results
        return run_or_reuse(os.path.join(work_dir, "eval", method, model),
                            {**options, "method": "eval", "synthetic": os.path.abspath(path), "model": model})

    def full_run(model):
        if model in given_full:  # a Full run made elsewhere (same options), e.g. in the background
            if not os.path.isfile(given_full[model]):
                if args.assemble_only:
                    return None
                raise SystemExit(f"--full={model}:{given_full[model]}: no such results.json yet; rerun when it exists.")
            return read_json(given_full[model])
        return run_or_reuse(os.path.join(work_dir, "full", model), {**options, "method": "full", "model": model})

    pairs = [(method, model) for method in methods for model in models]
    done = in_parallel(args.jobs, [(lambda p=p: evaluate(*p)) for p in pairs] + [(lambda m=m: full_run(m)) for m in models])
    evaluated = dict(zip(pairs, done[:len(pairs)]))
    full_results = dict(zip(models, done[len(pairs):]))

    full = {m: full_summary(r) for m, r in full_results.items()}
    cells = {method: {model: summary(evaluated[method, model]) for model in models} for method in methods}
    agreement = {method: rank_agreement(full, cells[method], models) for method in methods}
    labels = {}
    for method in methods:
        results = built[method][1] or {}
        size = results.get("artifact_bytes")
        labels[method] = f"{REGISTRY[method].row_label(args.n_sequences)} ({results.get('family', 'self-contained')}" \
                         f", {results.get('label_storage', '?')}" + ("" if size is None else f", {size / 1e3:.0f} kB") + ")"
    command = command_of("transfer.py", argv)
    table = markdown(models, methods, labels, full, cells, agreement)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"transfer-{args.dataset}")
    with open(stem + ".json", "w") as f:
        json.dump({"dataset": args.dataset, "command": command, "build_model": args.build_model,
                   "n_sequences": args.n_sequences, "eval_seeds": args.seeds, "models": models,
                   "methods": methods, "labels": labels,
                   "sets": {m: None if built[m][0] is None else {
                       "path": os.path.abspath(built[m][0]), "family": built[m][1].get("family"),
                       "label_storage": built[m][1].get("label_storage"),
                       "artifact_bytes": built[m][1].get("artifact_bytes")} for m in methods},
                   "overrides": {k: v for k, v in options.items() if k != "dataset"},
                   "full": full, "cells": cells, "rank_agreement": agreement}, f, indent=2)
    write_table(stem + ".md", command, table)
    plot(stem + ".png", models, methods, labels, full, cells,
         f"{args.dataset}: models trained on {args.n_sequences}-sequence sets built with {args.build_model} "
         f"(mean ± std over {args.seeds} seeds)")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
