"""NDCG@10 against artifact bytes: every kind of small set on one log-scale axis, chosen on validation.

    python benchmarks/pareto.py --dataset=ml-100k --draws=3 --seeds=3 \
        --points=popularity,hard@20,hard@100,topk@20:10,text_code@20:10,text_code@100:4,kcenter_kd@20:10,foster@20:int8/r4

A point is one kind of set at one size (``N`` windows or synthetic sequences):

* ``hard@N``: Random-N, next-item labels;
* ``topk@N:K`` / ``text_code@N:K``: Random-KD-N with its teacher labels stored as top-K / text codes
  in the bytes of top-K;
* ``kcenter_kd@N:K``: K-Center-KD-N, top-K labels stored;
* ``label_model@N:R``: Random-KD-N labelled by one stored rank-R model over the item text
  embeddings (``label_storage=label_model``, ``label_model_rank=R``): the windows cost their ids;
* ``foster@N[:fp16|int8][/rR]``: FOSTER-N, its summary saved at that precision (``set_precision``,
  default fp32) with user and time rank R (``foster_user_rank``/``foster_time_rank``; default
  the config's): the core (R x R x text dim) is most of its bytes;
* ``popularity``: the recent best-seller list (no model, no draws, no seeds).

A FOSTER point at fp16/int8 starts from the same point's fp32 distillation when that one is
in ``--points`` (it runs first): the summary is distilled once per draw and stored three ways.

Each point is run over ``--draws`` user draws x ``--seeds`` evaluation seeds (resumable: a
finished run's results.json under ``--work_dir`` is read back). Its bytes are what a user keeps
(self-contained sets only). A point is on the *validation* frontier when no point with at most
its bytes has a higher validation NDCG@10; for each budget in ``--budgets_kb`` the choice is the
point within it with the best validation NDCG@10, and only then is its test read. Writes
``<out>/<dataset>.{json,md,png}`` (test NDCG@10 mean ± standard error over draws x seeds).
"""

import os
import re
import shutil
import sys

import numpy as np

from common import command_of, figure, parse, parser_of, save, write_results, write_table  # beside this script
from label_storage import converged_full_row
from recbole_foster.methods.distillation import CHECKPOINT_FILE
from paper_table import _bytes, improvement_over_random, run_or_reuse

# how window sets are written (recbole_foster.distill.artifacts.save_windows): their bytes depend on it
SET_FORMAT = ("window sets: item ids without their padding (one length per window) where that is smaller, int16 "
              "while the catalog has under 32,768 items; label mask and user tokens not stored")
KINDS = ("popularity", "hard", "topk", "text_code", "label_model", "kcenter_kd", "foster")
TEACHER_LABELLED = ("topk", "text_code", "label_model", "kcenter_kd")  # real windows, the teacher's labels stored
MARKERS = {"popularity": "*", "hard": "o", "topk": "s", "text_code": "D", "label_model": "v", "kcenter_kd": "^",
           "foster": "P"}
POINT = re.compile(r"^(?P<kind>hard|topk|text_code|label_model|kcenter_kd|foster)@(?P<n>\d+)"
                   r"(?::(?P<k>\d+|fp32|fp16|int8))?(?:/r(?P<rank>\d+))?$")


def parse_point(spec):
    """``spec`` -> ``{"point", "kind", "n", "k", "precision", "rank"}``; ValueError saying the grammar."""
    if spec == "popularity":
        return {"point": spec, "kind": spec, "n": None, "k": None, "precision": None, "rank": None}
    match = POINT.match(spec)
    kind = match and match["kind"]
    k, rank = (match["k"], match["rank"]) if match else (None, None)
    bad = (not match or (kind == "hard" and (k or rank))
           or (kind in ("topk", "text_code", "label_model", "kcenter_kd") and (not k or not k.isdigit() or rank))
           or (kind == "foster" and k and k.isdigit()) or (kind == "label_model" and int(k) < 1))
    if bad or int(match["n"]) < 1 or (rank is not None and int(rank) < 1):
        raise ValueError(f"{spec!r}: expected popularity, hard@N, topk@N:K, text_code@N:K, label_model@N:R, "
                         "kcenter_kd@N:K or foster@N[:fp16|int8][/rR]")
    precision = (k or "fp32") if kind == "foster" else None
    if kind == "label_model":  # its number is the model's rank, not a top-k
        k, rank = None, k
    return {"point": spec, "kind": kind, "n": int(match["n"]), "k": int(k) if k and k.isdigit() else None,
            "precision": precision, "rank": int(rank) if rank else None}


def run_spec(point):
    """``(method, extra run options, work-dir folder name)`` of a point."""
    kind, n, k = point["kind"], point["n"], point["k"]
    if kind == "popularity":
        return "popularity", {}, "popularity"
    options = {"n_sequences": n}
    if kind == "hard":
        return "random", options, f"hard-n{n}"
    if kind in ("topk", "text_code"):
        return "random_kd", {**options, "label_storage": kind, "label_topk": k}, f"{kind}-n{n}-k{k}"
    if kind == "label_model":
        return ("random_kd", {**options, "label_storage": "label_model", "label_model_rank": point["rank"]},
                f"label_model-n{n}-r{point['rank']}")
    if kind == "kcenter_kd":
        return "kcenter_kd", {**options, "label_storage": "topk", "label_topk": k}, f"kcenter_kd-n{n}-k{k}"
    options["set_precision"] = point["precision"]
    if point["rank"]:
        options.update(foster_user_rank=point["rank"], foster_time_rank=point["rank"])
    return "foster", options, f"foster-n{n}-{point['precision']}" + (f"-r{point['rank']}" if point["rank"] else "")


def summarise(point, results):
    """The point's row from its draws' results: bytes, validation and test NDCG@10 over draws x seeds."""
    runs = [s for r in results for s in r.get("per_seed", [])]
    valid = np.array([s["valid"]["ndcg@10"] for s in runs])
    test = np.array([s["test"]["ndcg@10"] for s in runs])
    families = {r.get("family") for r in results}
    if families != {"self-contained"}:
        raise SystemExit(f"{point['point']}: its runs are {sorted(map(str, families))}, not self-contained; "
                         "its bytes would not be all a user keeps (pass --label_storage-free points only).")
    se = float(test.std(ddof=1) / np.sqrt(len(test))) if len(test) > 1 else 0.0
    paired = [{"draw": draw, "seed": s.get("seed"), "test": {"ndcg@10": s["test"]["ndcg@10"]}}
              for draw, r in enumerate(results) for s in r.get("per_seed", [])]
    teacher = (results[0].get("table") or {}).get("Full", {}).get("ndcg@10") if point["kind"] in TEACHER_LABELLED else None
    return {**point, "artifact_bytes": float(np.mean([r["artifact_bytes"] for r in results])),
            "teacher_test_ndcg@10": teacher,
            "valid_ndcg@10": float(valid.mean()), "ndcg@10": float(test.mean()), "ndcg@10_se": se,
            "n_runs": int(len(test)), "family": "self-contained", "runs": paired}


def draws_of(method, options, folder, draws, seed, distilled_in=None):
    """Each user draw's results (draw 0: the run's own selection_seed; draw i: seed + i), named as
    label_storage.run_draws names them, so their work dirs are shared. ``distilled_in``: the folder
    of the same FOSTER point at fp32, whose finished distillations this point starts from (the
    same steps, seeds and users give the same summary; only how it is stored differs)."""
    results = []
    for i in range(draws):
        name, draw_options = (method, options) if i == 0 else (f"{method}-sel{i}", {**options, "selection_seed": seed + i})
        if distilled_in and reuse_distillation(os.path.join(distilled_in, name), os.path.join(folder, name)):
            draw_options = {**draw_options, "resume": True}
        results.append(run_or_reuse(name, draw_options, folder))
    return results


def reuse_distillation(source, target):
    """Copy ``source``'s finished distillation checkpoint into ``target`` (not yet run); True if copied."""
    checkpoint = os.path.join(source, CHECKPOINT_FILE)
    if os.path.isfile(os.path.join(target, "results.json")) or not os.path.isfile(checkpoint):
        return False
    os.makedirs(target, exist_ok=True)
    shutil.copyfile(checkpoint, os.path.join(target, CHECKPOINT_FILE))
    return True


def validation_frontier(rows):
    """Points no point with at most their bytes beats on validation NDCG@10."""
    return [r["point"] for r in rows
            if not any(o["artifact_bytes"] <= r["artifact_bytes"] and o["valid_ndcg@10"] > r["valid_ndcg@10"]
                       for o in rows)]


def choice_within(rows, budget):
    """The row within ``budget`` bytes with the best validation NDCG@10 (fewer bytes on ties), or None."""
    fitting = [r for r in rows if r["artifact_bytes"] <= budget]
    return max(fitting, key=lambda r: (r["valid_ndcg@10"], -r["artifact_bytes"])) if fitting else None


def plot(result, path):
    rows, frontier = result["rows"], set(result["frontier"])
    fig, ax = figure((8, 4.5))
    for kind in KINDS:
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["artifact_bytes"])
        if mine:
            ax.errorbar([r["artifact_bytes"] for r in mine], [r["ndcg@10"] for r in mine],
                        yerr=[r["ndcg@10_se"] for r in mine], marker=MARKERS[kind], linestyle="none", capsize=3,
                        label=kind)
            for r in mine:
                ax.annotate(r["point"], (r["artifact_bytes"], r["ndcg@10"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    front = sorted((r for r in rows if r["point"] in frontier), key=lambda r: r["artifact_bytes"])
    ax.step([r["artifact_bytes"] for r in front], [r["ndcg@10"] for r in front], where="post", color="grey",
            alpha=0.6, label="validation frontier (its test)")
    if result["full_test_ndcg@10"] is not None:
        ax.axhline(result["full_test_ndcg@10"], color="black", linestyle="--",
                   label=f"Full, converged {result['full_test_ndcg@10']:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("artifact bytes (what a user keeps; log scale)")
    ax.set_ylabel("test NDCG@10 (mean ± SE)")
    save(fig, path, f"{result['dataset']}: NDCG@10 vs bytes ({result['draws']} draws x {result['eval_seeds']} seeds)",
         legend={"fontsize": 7})


def ior_text(ior):
    if not ior:
        return "-"
    se = ior["std"] / np.sqrt(ior["n"]) if ior["n"] > 1 else float("nan")
    return f"{ior['mean']:+.4f} ± {se:.4f} SE (n={ior['n']})" + (" **>2SE**" if ior["beyond_2se"] else "")


def _test_cell(r):
    """Test NDCG@10 ± SE; a point of one run (popularity: no model, no seed) has no SE."""
    return f"{r['ndcg@10']:.4f}" + (f" ± {r['ndcg@10_se']:.4f}" if r["n_runs"] > 1 else " (one run)")


def markdown(result):
    reference = result.get("reference")
    head = ("Every point is self-contained (its bytes are the file a user keeps); test NDCG@10 over "
            f"{result['draws']} user draw(s) x {result['eval_seeds']} evaluation seeds (runs = their number).\n\n"
            "| point | bytes | valid N@10 | test N@10 ± SE | runs | on validation frontier |")
    lines = [head + (f" IOR vs {reference} |" if reference else ""), "|---|---|---|---|---|---|" + ("---|" if reference else "")]
    for r in sorted(result["rows"], key=lambda r: r["artifact_bytes"]):
        lines.append(f"| {r['point']} | {_bytes(r['artifact_bytes'])} | {r['valid_ndcg@10']:.4f} | "
                     f"{_test_cell(r)} | {r['n_runs']} | "
                     f"{'yes' if r['point'] in result['frontier'] else ''} |"
                     + (f" {ior_text(r.get('ior_vs_reference'))} |" if reference else ""))
    lines += ["", "Per budget: the point chosen on validation NDCG@10, then its test.", "",
              "| budget | choice | bytes | valid N@10 | test N@10 ± SE |", "|---|---|---|---|---|"]
    for b in result["budgets"]:
        c = b["choice"]
        lines.append(f"| {_bytes(b['budget_bytes'])} | " + (f"{c['point']} | {_bytes(c['artifact_bytes'])} | "
                     f"{c['valid_ndcg@10']:.4f} | {_test_cell(c)} |" if c
                     else "nothing fits | - | - | - |"))
    if result["full_test_ndcg@10"] is not None:
        lines += ["", f"Full (converged): test NDCG@10 {result['full_test_ndcg@10']:.4f}"]
    if result.get("teacher_test_ndcg@10") is not None:
        lines += ["", f"Teacher of the soft-label points (the real-data run of their config): test NDCG@10 "
                      f"{result['teacher_test_ndcg@10']:.4f}. Each of {', '.join(TEACHER_LABELLED)} is the same "
                      "draws' real windows with that teacher's labels at that storage, so it is its own same-label "
                      "random baseline; hard@N is the plain-label one."]
    lines += ["", "Bytes as written: " + result.get("set_format", "window sets with int32 item ids and a stored label mask") + "."]
    return "\n".join(lines)


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--points", default="popularity,hard@20,hard@100,topk@20:10,text_code@20:10,"
                                            "text_code@100:4,kcenter_kd@20:10,foster@20:int8/r4")
    parser.add_argument("--draws", type=int, default=3, help="user draws (selection_seed = seed + i)")
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per set")
    parser.add_argument("--budgets_kb", default="2,4,8,16,32,64,128,256,512,1024", help="budgets in kB (1000 bytes)")
    parser.add_argument("--converged_full", default=None, metavar="RESULTS_JSON",
                        help="results.json of --method=full ended by early stopping: Full's line")
    parser.add_argument("--reference", default=None, help="a point of --points: every other point's IOR against "
                        "it (test NDCG@10 difference paired by draw and evaluation seed, > 2 SE marked)")
    parser.add_argument("--work_dir", default=None, help="default outputs/pareto/<dataset>")
    parser.add_argument("--out", default="benchmarks/results/pareto")
    args, run_options = parse(parser, argv)
    try:
        points = [parse_point(p) for p in args.points.split(",") if p]
        budgets = [float(b) * 1000 for b in args.budgets_kb.split(",") if b]
    except ValueError as error:
        parser.error(str(error))
    if not points or args.draws < 1 or args.seeds < 1:
        parser.error("--points must name at least one point; --draws and --seeds must be >= 1")
    if len({p["point"] for p in points}) != len(points):
        parser.error("--points names a point twice")
    if args.reference is not None and args.reference not in {p["point"] for p in points}:
        parser.error(f"--reference={args.reference} is not one of --points")
    full = converged_full_row(args.converged_full, None, args.dataset) if args.converged_full else None
    options = {"dataset": args.dataset, "distilled_eval_seeds": args.seeds, **run_options}
    seed = int(options.get("seed", 2020))
    base_dir = args.work_dir or os.path.join("outputs", "pareto", args.dataset)

    rows = []
    fp32_first = sorted(points, key=lambda p: p["kind"] == "foster" and p["precision"] != "fp32")
    for point in fp32_first:
        method, extra, name = run_spec(point)
        folder = os.path.join(base_dir, name)
        if method == "popularity":  # one list: no draw, no seed
            results = [run_or_reuse("popularity", {k: v for k, v in options.items() if k != "distilled_eval_seeds"},
                                    folder)]
        else:
            sibling = run_spec({**point, "precision": "fp32"})[2] if method == "foster" else None
            distilled_in = os.path.join(base_dir, sibling) if sibling and sibling != name else None
            results = draws_of(method, {**options, **extra}, folder, args.draws, seed, distilled_in)
        rows.append({**summarise(point, results), "work_dir": folder})
    order = [p["point"] for p in points]
    rows.sort(key=lambda r: order.index(r["point"]))
    if args.reference is not None:
        reference = next(r for r in rows if r["point"] == args.reference)
        for r in rows:  # popularity has one run and no seeds: no pairs
            r["ior_vs_reference"] = None if r is reference else improvement_over_random(r, reference)
    frontier = validation_frontier(rows)
    result = {
        "dataset": args.dataset, "draws": args.draws, "eval_seeds": args.seeds,
        "overrides": {k: v for k, v in options.items() if k != "dataset"},
        "full_test_ndcg@10": full["ndcg@10"] if full else None, "converged_full": args.converged_full,
        "teacher_test_ndcg@10": next((r["teacher_test_ndcg@10"] for r in rows if r.get("teacher_test_ndcg@10")), None),
        "set_format": SET_FORMAT, "rows": rows, "frontier": frontier, "reference": args.reference,
        "budgets": [{"budget_bytes": b, "choice": choice_within(rows, b)} for b in budgets],
        "command": command_of("pareto.py", argv),
    }
    write_results(args.out, args.dataset, result, plot)
    table = markdown(result)
    write_table(os.path.join(args.out, args.dataset + ".md"), result["command"], table)
    print(table)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
