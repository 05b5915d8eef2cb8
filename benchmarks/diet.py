"""DIET over time stages: the per-stage table and the DIET targets, from one run.

    python benchmarks/diet.py --dataset=amazon-games --data_path=../shared/data \
        --config_files=benchmarks/configs/amazon-games-temporal-cpu.yaml
    python benchmarks/diet.py --results=outputs/amazon-games/TextSASRec/diet/seed2020/results.json
    python benchmarks/diet.py --results=RUN/results.json --compare=stream:OTHER_RUN/results.json

Runs ``run_foster.py --method=diet`` (every other ``--key=value`` goes to it) into
``--work_dir/<dataset>`` and writes ``<out>/diet-<dataset>.md`` (and ``.json``): per stage and
method, NDCG@10 / Recall@10 on the report half of the period after the stage, NDCG@10 as a share
of Full-s's, the set's size as a share of the training interactions seen, and cumulative seconds
for a model at every stage (a set: keeping it current plus one fresh model trained on it; also as
a share of Full-s's, the cost of retraining), and the seconds of one model (a set: one fresh
model trained on it, the paper's "model iteration"; a model: its training) as a share of one
Full-s retrain; then every method's test numbers after the last stage, and
per stage whether DIET meets the DIET targets (>= 95% of Full-s's NDCG@10, memory <= 2% of the
interactions seen, <= 10% of Full-s's cumulative cost, above Reservoir-KD); with
``diet_rank_models`` the architecture-ranking check per stage and memory (Kendall tau and top-1
agreement with Full-s's order of the models, seconds on the memory vs on Full-s's data) and each
model's NDCG@10; with ``diet_refine_steps`` the refined memory is one more row. A DIET run resumes per
stage, so rerunning the same command after an interruption continues it. ``--compare`` tables
the memory of other runs over the same stages (an ablation of ``diet_update_fraction`` or
``diet_addressing``) beside this run's and its Reservoir-KD, and names the run with the best
selection-half NDCG@10 (the report half is never used to choose).
"""

import json
import os
import subprocess
import sys

from common import parser_of  # beside this script

from recbole_foster.diet.pipeline import memory_tag

RUN_FOSTER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_foster.py")
TARGETS = {"ndcg_share": 0.95, "size_share": 0.02, "cost_share": 0.10}


def _share(value, reference):
    return None if value is None or not reference else value / reference


def _fmt(value, digits=4, percent=False):
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}f}"


def _seed_std(row, metric="ndcg@10"):
    """A set's std over its evaluation seeds (None for a model or a single seed)."""
    return row["report_std"][metric] if len(row.get("per_seed", [])) > 1 else None


def _mean_std(value, std):
    return _fmt(value) + ("" if std is None else f" ± {std:.4f}")


def stage_rows(results, reference="Full-s"):
    """One dict per (stage, method) with the table's numbers."""
    rows = []
    for stage in results["stages"]:
        ref = stage["methods"].get(reference)
        for label, row in stage["methods"].items():
            rows.append({
                "stage": stage["stage"], "judged_on": stage["judged_on"], "method": label,
                "ndcg@10": row["report"]["ndcg@10"], "ndcg@10_std": _seed_std(row),
                "recall@10": row["report"]["recall@10"],
                "ndcg_share": _share(row["report"]["ndcg@10"], ref and ref["report"]["ndcg@10"]),
                "size_share": row.get("size_share"),
                "cumulative_seconds": row["cumulative_seconds"],
                "cost_share": _share(row["cumulative_seconds"], ref and ref["cumulative_seconds"]),
                "model_seconds": row.get("seconds_per_fresh_model", row["update_seconds"]),
                "model_share": _share(row.get("seconds_per_fresh_model", row["update_seconds"]),
                                      ref and ref["update_seconds"]),
            })
    return rows


def targets(results, diet_label=None, reservoir_label=None):
    """Per stage: does DIET's memory meet each of the DIET targets (None where it cannot be told)."""
    tag = memory_tag(results["diet"])
    diet_label = diet_label or f"DIET-{tag}"
    reservoir_label = reservoir_label or f"Reservoir-KD-{tag}"
    out = []
    for row in (r for r in stage_rows(results) if r["method"] == diet_label):
        stage = next(s for s in results["stages"] if s["stage"] == row["stage"])
        reservoir = stage["methods"].get(reservoir_label)
        out.append({
            "stage": row["stage"],
            "ndcg": None if row["ndcg_share"] is None else row["ndcg_share"] >= TARGETS["ndcg_share"],
            "size": row["size_share"] <= TARGETS["size_share"],
            "cost": None if row["cost_share"] is None else row["cost_share"] <= TARGETS["cost_share"],
            "above_reservoir": None if reservoir is None else row["ndcg@10"] > reservoir["report"]["ndcg@10"],
        })
    return out


def ranking_rows(results):
    """Per stage and memory, the architecture-ranking check (``diet_rank_models``): Kendall tau and
    top-1 agreement with Full-s, and the seconds of training and evaluating every model on it."""
    rows = []
    for stage in results["stages"]:
        ranking = stage.get("ranking")
        for label, row in ((ranking or {}).get("sets") or {}).items():
            rows.append({"stage": stage["stage"], "memory": label, "tau": row["tau"], "p_value": row["p_value"],
                         "top1_agree": row["top1_agree"], "best_set": row.get("best_set"),
                         "best_full": row.get("best_full"), "seconds": row["seconds"],
                         "full_seconds": row["full_seconds"], "speedup": row["speedup"],
                         "ndcg@10": {m: r["ndcg@10"] for m, r in row["per_model"].items()},
                         "full_ndcg@10": {m: ranking["full"][m]["ndcg@10"] for m in row["per_model"]}})
    return rows


def ranking_markdown(results):
    rows = ranking_rows(results)
    if not rows:
        return []
    marks = {True: "yes", False: "no", None: "-"}
    models = results["stages"][0]["ranking"]["models"]
    lines = ["", f"Architecture ranking ({', '.join(models)}): per memory, Kendall tau between the models' NDCG@10 "
             "order on it and on Full-s's data (report half), the same best model (top-1), and the seconds to train "
             "and evaluate every model on the memory vs on Full-s's data:", "",
             "| stage | memory | Kendall tau (p) | top-1 | best on memory / Full-s | seconds on memory | "
             "seconds on Full-s | Full-s / memory |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tau = "-" if r["tau"] is None else f"{r['tau']:+.2f} ({r['p_value']:.2f})"
        speed = "-" if r["speedup"] is None else f"{r['speedup']:.1f}x"
        lines.append(f"| {r['stage']} | {r['memory']} | {tau} | {marks[r['top1_agree']]} | {r['best_set']} / "
                     f"{r['best_full']} | {r['seconds']:.1f} | {r['full_seconds']:.1f} | {speed} |")
    lines += ["", "NDCG@10 per model (report half):", "",
              "| stage | model | Full-s | " + " | ".join(dict.fromkeys(r["memory"] for r in rows)) + " |",
              "|---|---|---|" + "---|" * len(dict.fromkeys(r["memory"] for r in rows))]
    for stage in results["stages"]:
        mine = [r for r in rows if r["stage"] == stage["stage"]]
        for model in models:
            cells = " | ".join(_fmt(r["ndcg@10"].get(model)) for r in mine)
            lines.append(f"| {stage['stage']} | {model} | {_fmt(mine[0]['full_ndcg@10'].get(model))} | {cells} |")
    return lines


def markdown(results):
    diet = results["diet"]
    size = (f"a memory of {100 * diet['diet_memory_share']:g}% of the training rows seen"
            if diet.get("diet_memory_share") else f"memory of {diet['diet_memory_size']} windows")
    refine = f", labels refined by {diet['diet_refine_steps']} steps per stage" if diet.get("diet_refine_steps") else ""
    lines = [f"DIET on {results['dataset']} ({results['model']}, seed {results['seed']}): "
             f"{len(results['stages'])} stages, {size}, "
             f"addressing `{diet['diet_addressing']}`{refine}.", "",
             "| stage | judged on | method | NDCG@10 | Recall@10 | % of Full-s NDCG@10 | size / interactions seen "
             "| cumulative s | % of Full-s cost | one model s | % of a Full-s retrain |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in stage_rows(results):
        lines.append(f"| {r['stage']} | {r['judged_on']} | {r['method']} | {_mean_std(r['ndcg@10'], r['ndcg@10_std'])} | "
                     f"{_fmt(r['recall@10'])} | {_fmt(r['ndcg_share'], percent=True)} | "
                     f"{_fmt(r['size_share'], percent=True)} | {r['cumulative_seconds']:.1f} | "
                     f"{_fmt(r['cost_share'], percent=True)} | {r['model_seconds']:.1f} | "
                     f"{_fmt(r['model_share'], percent=True)} |")
    if results.get("table"):
        lines += ["", "Test split after the last stage:", "", "| method | NDCG@10 | Recall@10 |", "|---|---|---|"]
        for label, metrics in results["table"].items():
            std = metrics.get("ndcg@10_std")
            lines.append(f"| {label} | {_mean_std(metrics.get('ndcg@10'), std)} | "
                         f"{_fmt(metrics.get('recall@10'))} |")
    marks = {True: "yes", False: "no", None: "-"}
    lines += ["", "Targets (DIET's memory): >= 95% of Full-s NDCG@10, <= 2% of the interactions seen, "
              "<= 10% of Full-s's cumulative cost, above Reservoir-KD:", "",
              "| stage | NDCG | size | cost | above Reservoir-KD |", "|---|---|---|---|---|"]
    for t in targets(results):
        lines.append(f"| {t['stage']} | {marks[t['ndcg']]} | {marks[t['size']]} | {marks[t['cost']]} | "
                     f"{marks[t['above_reservoir']]} |")
    lines += ranking_markdown(results)
    return "\n".join(lines) + "\n"


def variant_rows(variants):
    """DIET's memory in several runs over the same stages (an ablation): per stage and run, the
    memory's NDCG@10 on the selection half (what a choice may look at) and on the report half, and
    what addressing did. ``variants``: ``{name: results}``; the first run's Reservoir-KD rows are the
    same-label random reference."""
    first = next(iter(variants.values()))
    for name, results in variants.items():
        if [s["slice"] for s in results["stages"]] != [s["slice"] for s in first["stages"]] or \
                (results["dataset"], results["seed"]) != (first["dataset"], first["seed"]):
            raise SystemExit(f"--compare {name}: not the same dataset, seed and stages as the first run")
    rows, tag = [], memory_tag(first["diet"])
    for index, stage in enumerate(first["stages"]):
        reservoir = stage["methods"].get(f"Reservoir-KD-{tag}")
        if reservoir is not None:
            rows.append({"stage": stage["stage"], "variant": f"Reservoir-KD-{tag} (reference)",
                         "selection": reservoir["selection"]["ndcg@10"], "report": reservoir["report"]["ndcg@10"],
                         "report_std": _seed_std(reservoir), "replaced": None,
                         "labelled_positions": reservoir["labelled_positions"]})
        for name, results in variants.items():
            st = results["stages"][index]
            row = st["methods"][f"DIET-{memory_tag(results['diet'])}"]
            rows.append({"stage": st["stage"], "variant": name, "selection": row["selection"]["ndcg@10"],
                         "report": row["report"]["ndcg@10"], "report_std": _seed_std(row),
                         "replaced": len(st["memory"].get("replaced_slots", [])) if st["stage"] > 1 else None,
                         "labelled_positions": row["labelled_positions"]})
    return rows


def _variant_name(results):
    diet = results["diet"]
    return f"{diet['diet_addressing']}, fraction {diet.get('diet_update_fraction')}"


def variant_choice(rows):
    """The variant with the best mean selection-half NDCG@10 over the stages after the first (where
    addressing acts); the report half is never looked at."""
    later = [r for r in rows if r["stage"] > 1 and not r["variant"].endswith("(reference)")]
    names = list(dict.fromkeys(r["variant"] for r in later))
    return max(names, key=lambda n: sum(r["selection"] for r in later if r["variant"] == n)) if names else None


def variant_markdown(rows):
    lines = ["", "DIET's memory across runs (same stages; selection half = what a choice may use, report half = "
             "the reported number, mean ± std over evaluation seeds):", "",
             "| stage | run | selection NDCG@10 | report NDCG@10 | entries replaced | labelled positions |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['variant']} | {_fmt(r['selection'])} | {_mean_std(r['report'], r['report_std'])} "
                     f"| {'-' if r['replaced'] is None else r['replaced']} | {r['labelled_positions']} |")
    lines += ["", f"Chosen on the selection half (mean over stages 2+): {variant_choice(rows)}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = parser_of(__doc__, dataset="ml-1m")
    parser.add_argument("--results", default=None, help="an existing DIET results.json (no run)")
    parser.add_argument("--work_dir", default=os.path.join("outputs", "benchmarks", "diet"))
    parser.add_argument("--out", default=os.path.join("benchmarks", "results"))
    parser.add_argument("--compare", action="append", default=[], metavar="NAME:RESULTS",
                        help="another DIET run over the same stages (an ablation), repeatable; its memory's rows "
                             "are tabled beside this run's")
    args, extra = parser.parse_known_args(argv)
    for item in extra:
        if not item.startswith("--") or "=" not in item:
            parser.error(f"run options are --key=value, got {item!r}")
    path = args.results
    if path is None:
        folder = os.path.join(args.work_dir, args.dataset)
        options = [f"--dataset={args.dataset}", "--method=diet", "--eval_protocol=global_temporal",
                   f"--output_dir={folder}", *extra]
        print(f"[run] python run_foster.py {' '.join(options)}", flush=True)
        done = subprocess.run([sys.executable, RUN_FOSTER, *options], env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise SystemExit(f"the DIET run failed (exit {done.returncode}); rerun the same command to continue it")
        path = os.path.join(folder, "results.json")
    with open(path) as f:
        results = json.load(f)
    if results.get("stopped_after_stage"):
        raise SystemExit(f"{path}: the run stopped after stage {results['stopped_after_stage']}; rerun it to finish")
    variants = {}
    if args.compare:
        variants = {f"DIET ({_variant_name(results)})": results}
        for item in args.compare:
            label, sep, other = item.partition(":")
            if not sep or not os.path.isfile(other):
                parser.error(f"--compare takes NAME:RESULTS_JSON, got {item!r}")
            with open(other) as f:
                variants[label] = json.load(f)
    rows = variant_rows(variants) if variants else []
    text = markdown(results) + (variant_markdown(rows) if rows else "")
    os.makedirs(args.out, exist_ok=True)
    name = os.path.join(args.out, f"diet-{results['dataset']}")
    with open(name + ".md", "w") as f:
        f.write(text)
    with open(name + ".json", "w") as f:
        json.dump({"results": path, "stages_plot": results.get("stages_plot"), "rows": stage_rows(results),
                   "targets": targets(results), "table": results.get("table"),
                   "memory": [{"stage": st["stage"], **{k: st["memory"].get(k) for k in (
                       "position_budget", "labelled_positions", "replaced_slots", "replacement_rows")}}
                              for st in results["stages"]],
                   "ranking": ranking_rows(results), "variants": rows, "variant_choice": variant_choice(rows) if rows else None}, f, indent=2)
    print(text)
    print(f"written: {name}.md, {name}.json; plot: {results.get('stages_plot')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
