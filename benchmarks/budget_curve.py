"""Budget curve (the paper's Fig. 5): NDCG@10 of a small set against its number of sequences N.

    python benchmarks/budget_curve.py --dataset=amazon-games --data_path=../shared/data \
        --config_files=benchmarks/configs/amazon-games-temporal-cpu.yaml --budgets=5,10,20,50,100 \
        --storages=topk,text_code --seeds=3 --selection_seeds=1

For each N: Random-N (hard labels) and Random-KD-N with each ``label_storage`` (``topk`` and the
storage under test, here ``text_code``, at no more bytes than top-``label_topk``), over the same
user draws and evaluation seeds, one ``run_foster.py`` run each (resumable: a finished run is read
back). ``--runs=STORAGE@N:DIR`` reuses an existing ``benchmarks/paper_table.py`` work dir for that
storage at that N (``hard`` for Random-N). Writes ``<out>/<dataset>.{json,md,png}``.
"""

import json
import os
import sys

import matplotlib.ticker

from common import command_of, figure, parse, parser_of, save, write_table  # beside this script
from label_storage import label_of, run_draws
from paper_table import _bytes, improvement_over_random


def plot(curves, full, path, title):
    fig, ax = figure((7, 4))
    for label, points in curves.items():
        ax.errorbar([p["n"] for p in points], [p["ndcg@10"] for p in points],
                    yerr=[p["ndcg@10_std"] or 0 for p in points], marker="o", capsize=3, label=label)
    ax.axhline(full, color="black", linestyle="--", label=f"Full {full:.4f}")
    ax.set_xscale("log")
    ax.set_xticks(sorted({p["n"] for points in curves.values() for p in points}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("sequences in the set (N)")
    ax.set_ylabel("test NDCG@10")
    save(fig, path, title, legend={"fontsize": 8})


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--budgets", default="5,10,20,50,100")
    parser.add_argument("--storages", default="topk,text_code")
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per set")
    parser.add_argument("--selection_seeds", type=int, default=1, help="user draws (selection_seed = seed + i)")
    parser.add_argument("--label_topk", type=int, default=10)
    parser.add_argument("--runs", action="append", default=[], metavar="STORAGE@N:DIR")
    parser.add_argument("--work_dir", default=None, help="default outputs/budget_curve/<dataset>")
    parser.add_argument("--out", default="benchmarks/results/budget-curve")
    args, run_options = parse(parser, argv)
    options = {"dataset": args.dataset, "distilled_eval_seeds": args.seeds, "label_topk": args.label_topk,
               **run_options}
    try:
        budgets = [int(n) for n in args.budgets.split(",") if n]
    except ValueError as error:
        parser.error(str(error))
    storages = ["hard"] + [s for s in args.storages.split(",") if s]
    base_dir = args.work_dir or os.path.join("outputs", "budget_curve", args.dataset)
    dirs = {(s, n): os.path.join(base_dir, f"{s}-n{n}") for s in storages for n in budgets}
    for spec in args.runs:
        key, _, folder = spec.partition(":")
        storage, _, n = key.partition("@")
        if (storage, int(n or 0)) not in dirs or not folder:
            parser.error(f"--runs={spec}: expected STORAGE@N:DIR with STORAGE in {storages} and N in {budgets}")
        dirs[(storage, int(n))] = folder
    seed = int(options.get("seed", 2020))

    curves, rows, full = {}, [], None
    for n in budgets:
        results = {}
        for storage in storages:
            method = "random" if storage == "hard" else "random_kd"
            extra_options = {} if storage == "hard" else {"label_storage": storage}
            results[storage] = run_draws(method, {**options, "n_sequences": n, **extra_options}, dirs[(storage, n)],
                                         args.selection_seeds, seed)
            result = results[storage]
            full = full or result["table"]["Full"]
            label = label_of(method, storage, "N", args.label_topk)
            row = {"n": n, "method": label, "label_storage": storage, "family": result.get("family"),
                   "artifact_bytes": result.get("artifact_bytes"), "ndcg@10": result["test"]["ndcg@10"],
                   "ndcg@10_std": result["test"].get("ndcg@10_std"), "recall@10": result["test"]["recall@10"],
                   "recall@10_std": result["test"].get("recall@10_std")}
            if storage not in ("hard", "topk") and "topk" in results:
                row["ior_vs_topk"] = improvement_over_random(result, results["topk"])
            rows.append(row)
            curves.setdefault(label, []).append(row)

    lines = ["| N | set | family | bytes | R@10 | N@10 | IOR N@10 vs Random-KD-N top-k |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ior = r.get("ior_vs_topk")
        ior_cell = "-" if not ior else (f"{ior['mean']:+.4f} ± {ior['std']:.4f} (n={ior['n']})"
                                        + (" **>2SE**" if ior["beyond_2se"] else ""))
        lines.append(f"| {r['n']} | {r['method']} | {r['family'] or '-'} | {_bytes(r['artifact_bytes'])} | "
                     f"{r['recall@10']:.4f} ± {r['recall@10_std'] or 0:.4f} | {r['ndcg@10']:.4f} ± {r['ndcg@10_std'] or 0:.4f} | "
                     f"{ior_cell} |")
    table = "\n".join(lines)
    command = command_of("budget_curve.py", argv)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.dataset)
    with open(stem + ".json", "w") as f:
        json.dump({"dataset": args.dataset, "budgets": budgets, "eval_seeds": args.seeds,
                   "selection_seeds": args.selection_seeds, "full_test": full,
                   "overrides": {k: v for k, v in options.items() if k != "dataset"},
                   "work_dirs": {f"{s}@{n}": d for (s, n), d in dirs.items()}, "command": command, "rows": rows},
                  f, indent=2)
    write_table(stem + ".md", command, table)
    plot(curves, full["ndcg@10"], stem + ".png",
         f"{args.dataset}: NDCG@10 vs N ({args.selection_seeds} draw(s) x {args.seeds} eval seeds)")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
