"""Small sets at equal bytes: for a byte budget, which self-contained set trains the best model?

    python benchmarks/equal_bytes.py --dataset=amazon-games --data_path=../shared/data \
        --config_files=benchmarks/configs/amazon-games-temporal-cpu.yaml --budget_of=topk@20 \
        --points=hard@20,topk@20,text_code@20,hard@125,text_code@40:4,text_code@60:2 --seeds=3 --selection_seeds=1

The label-storage tables compare sets of the same N at equal bytes. A user with a byte budget
can also spend it on *more windows*: hard labels cost a few bytes per window, and a text code's
rank can shrink to make room for windows (``label_topk`` is text_code's byte budget per labelled
position, so ``text_code@40:4`` is 40 windows whose codes take the bytes of top-4 labels). Each
point ``STORAGE@N[:K]`` (``hard`` = Random-N, else Random-KD-N with that ``label_storage``, K its
``label_topk``, default ``--label_topk``) is run over the same user draws and evaluation seeds
(resumable; ``--runs=POINT:DIR`` reuses a ``paper_table.py`` / ``budget_curve.py`` work dir).
The budget is the bytes of the ``--budget_of`` point; for each storage the point within budget
with the best *validation* NDCG@10 is its choice, and only then is its test metric read.
Writes ``<out>/<dataset>.{json,md,png}``.
"""

import json
import os
import sys

import numpy as np

from common import command_of, figure, parse, parser_of, save, write_table  # beside this script
from label_storage import label_of, run_draws
from paper_table import _bytes, improvement_over_random


def parse_point(spec, default_k):
    """``STORAGE@N[:K]`` -> (storage, n, k); k is None for hard labels."""
    storage, _, rest = spec.partition("@")
    n, _, k = rest.partition(":")
    if storage not in ("hard", "topk", "text_code", "dense") or not n.isdigit() or (k and not k.isdigit()):
        raise ValueError(f"{spec!r}: expected STORAGE@N[:K], STORAGE one of hard, topk, text_code, dense")
    return storage, int(n), None if storage == "hard" else int(k or default_k)


def point_name(storage, n, k):
    return f"{storage}@{n}" + (f":{k}" if k is not None else "")


def valid_ndcg(result):
    """Validation NDCG@10 over the point's draws (each draw's is its evaluation seeds' mean)."""
    if "draws" in result:
        return float(np.mean([d["valid_ndcg@10"] for d in result["draws"]]))
    return result["valid"]["ndcg@10"]


def check_point(result, storage, n, k, folder):
    """A reused run must be the point it stands for, and self-contained (its bytes are all a user keeps)."""
    found = (result.get("label_storage"), result.get("n_sequences"), result.get("config", {}).get("label_topk"))
    expected = (storage, n, k if k is not None else found[2])
    if found != expected or result.get("family") != "self-contained":
        raise SystemExit(f"{folder}: its run is label_storage={found[0]}, n_sequences={found[1]}, label_topk={found[2]}, "
                         f"{result.get('family')}; the point {point_name(storage, n, k)} needs {expected[0]}, {n}, "
                         f"{expected[2]}, self-contained. Pass another --runs folder or none (it is then run).")


def choices_on_validation(rows, budget):
    """Per storage, the point within ``budget`` bytes with the best validation NDCG@10."""
    chosen = {}
    for row in rows:
        if row["artifact_bytes"] <= budget and (row["storage"] not in chosen
                                                or row["valid_ndcg@10"] > chosen[row["storage"]]["valid_ndcg@10"]):
            chosen[row["storage"]] = row
    return {storage: row["point"] for storage, row in chosen.items()}


def ior_cell(ior):
    if not ior:
        return "-"
    return f"{ior['mean']:+.4f} ± {ior['std']:.4f} (n={ior['n']})" + (" **>2SE**" if ior["beyond_2se"] else "")


def plot(rows, budget, full, path, title):
    fig, ax = figure((7, 4))
    for storage in dict.fromkeys(r["storage"] for r in rows):
        points = sorted((r for r in rows if r["storage"] == storage), key=lambda r: r["artifact_bytes"])
        ax.errorbar([r["artifact_bytes"] / 1e3 for r in points], [r["ndcg@10"] for r in points],
                    yerr=[r["ndcg@10_std"] or 0 for r in points], marker="o", capsize=3, label=storage)
        for r in points:
            ax.annotate(f"N={r['n']}" + (f", k={r['k']}" if r["k"] is not None else ""),
                        (r["artifact_bytes"] / 1e3, r["ndcg@10"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.axvline(budget / 1e3, color="grey", linestyle=":", label=f"budget {_bytes(budget)}")
    ax.axhline(full, color="black", linestyle="--", label=f"Full {full:.4f}")
    ax.set_xlabel("artifact size (kB)")
    ax.set_ylabel("test NDCG@10")
    save(fig, path, title, legend={"fontsize": 8})


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--points", default="hard@20,topk@20,text_code@20,hard@100,text_code@40:4")
    parser.add_argument("--budget_of", default="topk@20", help="the point whose bytes are the budget")
    parser.add_argument("--reference", default=None, help="IOR of every point against this one, paired by "
                        "(draw, evaluation seed); default --budget_of")
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per set")
    parser.add_argument("--selection_seeds", type=int, default=1, help="user draws (selection_seed = seed + i)")
    parser.add_argument("--label_topk", type=int, default=10)
    parser.add_argument("--runs", action="append", default=[], metavar="POINT:DIR")
    parser.add_argument("--work_dir", default=None, help="default outputs/equal_bytes/<dataset>")
    parser.add_argument("--out", default="benchmarks/results/equal-bytes")
    args, run_options = parse(parser, argv)
    options = {"dataset": args.dataset, "distilled_eval_seeds": args.seeds, **run_options}
    try:
        points = [parse_point(p, args.label_topk) for p in args.points.split(",") if p]
        budget_point = parse_point(args.budget_of, args.label_topk)
        reference = parse_point(args.reference or args.budget_of, args.label_topk)
        runs = {}
        for spec in args.runs:
            key, _, folder = spec.partition(":") if spec.count(":") == 1 else spec.rpartition(":")
            runs[parse_point(key, args.label_topk)] = folder
    except ValueError as error:
        parser.error(str(error))
    for point in runs:
        if point not in points:
            parser.error(f"--runs: {point_name(*point)} is not one of --points")
    if budget_point not in points or reference not in points:
        parser.error("--budget_of and --reference must be among --points")
    base_dir = args.work_dir or os.path.join("outputs", "equal_bytes", args.dataset)
    seed = int(options.get("seed", 2020))

    rows, results, full = [], {}, None
    for storage, n, k in points:
        method = "random" if storage == "hard" else "random_kd"
        extra_options = {} if storage == "hard" else {"label_storage": storage, "label_topk": k}
        folder = runs.get((storage, n, k)) or os.path.join(base_dir, f"{storage}-n{n}" + (f"-k{k}" if k else ""))
        result = run_draws(method, {**options, "n_sequences": n, **extra_options}, folder, args.selection_seeds, seed)
        check_point(result, storage, n, k, folder)
        results[(storage, n, k)] = result
        full = full or result["table"]["Full"]
        rows.append({"point": point_name(storage, n, k), "storage": storage, "n": n, "k": k,
                     "method": label_of(method, storage, n, k), "family": result.get("family"),
                     "artifact_bytes": result["artifact_bytes"], "valid_ndcg@10": valid_ndcg(result),
                     "ndcg@10": result["test"]["ndcg@10"], "ndcg@10_std": result["test"].get("ndcg@10_std"),
                     "recall@10": result["test"]["recall@10"], "work_dir": folder})
    budget = next(r["artifact_bytes"] for r in rows if r["point"] == point_name(*budget_point))
    for row, point in zip(rows, points):
        row["ior_vs_reference"] = None if point == reference else improvement_over_random(results[point], results[reference])
    chosen = choices_on_validation(rows, budget)

    lines = [f"Budget: {_bytes(budget)} (the bytes of {point_name(*budget_point)}); * = the storage's choice "
             "within budget, by validation NDCG@10", "",
             f"| point | set | family | bytes | within budget | valid N@10 | test R@10 | test N@10 | IOR N@10 vs {point_name(*reference)} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = " *" if chosen.get(r["storage"]) == r["point"] else ""
        lines.append(f"| {r['point']}{mark} | {r['method']} | {r['family'] or '-'} | {_bytes(r['artifact_bytes'])} | "
                     f"{'yes' if r['artifact_bytes'] <= budget else 'no'} | {r['valid_ndcg@10']:.4f} | "
                     f"{r['recall@10']:.4f} | {r['ndcg@10']:.4f} ± {r['ndcg@10_std'] or 0:.4f} | {ior_cell(r['ior_vs_reference'])} |")
    table = "\n".join(lines)
    command = command_of("equal_bytes.py", argv)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.dataset)
    with open(stem + ".json", "w") as f:
        json.dump({"dataset": args.dataset, "budget_bytes": budget, "budget_of": point_name(*budget_point),
                   "reference": point_name(*reference),
                   "eval_seeds": args.seeds, "selection_seeds": args.selection_seeds, "full_test": full,
                   "chosen_on_validation": chosen, "overrides": {k: v for k, v in options.items() if k != "dataset"},
                   "command": command, "rows": rows}, f, indent=2)
    write_table(stem + ".md", command, table)
    plot(rows, budget, full["ndcg@10"], stem + ".png",
         f"{args.dataset}: test NDCG@10 vs bytes ({args.selection_seeds} draw(s) x {args.seeds} eval seeds)")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
