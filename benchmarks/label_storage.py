"""Self-contained small sets at equal storage: the same windows with their labels kept in different ways.

    python benchmarks/label_storage.py --dataset=ml-100k --seeds=3 --selection_seeds=3 \
        --storages=topk,text_code,teacher --methods=random_kd,kcenter_kd --label_topk=10

For each ``label_storage`` (``topk``, ``text_code``; ``teacher`` = the teacher labels the set at
training time, the teacher-assisted reference) and each teacher-labelled method, one
``benchmarks/paper_table.py`` run per user draw (``--selection_seeds``, all methods over the
same draws) and evaluation seed, plus Random-20 with hard labels. Two IORs per row, paired by
(draw, evaluation seed): against Random-KD-N with ``--reference_storage`` labels (what the
storage adds at no more bytes) and against Random-KD-N with the row's own storage (what the
windows add, same labels). Runs are resumable and reusable: ``--runs=STORAGE:DIR`` reads (and
completes) an existing paper_table work dir for that storage. ``--foster_draws=K`` adds the
paper's method (FOSTER-N, its own coupled soft labels, the default settings) over K of the same
draws, so the headline holds it beside the sets it is compared with (its runs live in the
reference storage's dir, or ``--runs=foster:DIR``). Writes ``<out>/<dataset>.{json,md,png}``.
"""

import json
import os
import sys

import matplotlib.ticker

from common import command_of, figure, parse, parser_of, save, write_table  # beside this script
from paper_table import LABELS, improvement_over_random, markdown, pooled, row_of, run_or_reuse

STORAGE_LABELS = {"topk": "top-{k} labels", "text_code": "text-code labels (≤ top-{k} bytes)",
                  "dense": "dense labels", "teacher": "teacher at training time"}


def run_draws(method, options, work_dir, draws, seed):
    """``method`` over ``draws`` user draws (selection_seed = seed + i; draw 0 uses the run's own
    selection_seed, by default its seed), pooled as paper_table pools them."""
    return pooled([run_or_reuse(method, options, work_dir)] + [
        run_or_reuse(f"{method}-sel{i}", {**options, "selection_seed": seed + i}, work_dir) for i in range(1, draws)])


def label_of(method, storage, n, k):
    if method == "random":
        return f"Random-{n} (hard labels)"
    if method == "foster":
        return f"FOSTER-{n} (paper's method, its own soft sequences)"
    return f"{LABELS[method]}-{n}, {STORAGE_LABELS[storage].format(k=k)}"


def converged_full_row(path, n, dataset):
    """The row of a ``--method=full`` run that early stopping ended (the headline's Full); the
    sets' teacher may be a capped run, which is never the headline's reference. Its model and seed
    are checked against the teacher's resolved config once the table's runs exist
    (:func:`check_same_setting`)."""
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--converged_full={path}: cannot read it ({error}).")
    training = results.get("training")
    if results.get("method") != "full" or not training:
        raise SystemExit(f"--converged_full={path}: not the results.json of a `run_foster.py --method=full` run that "
                         "records how it ended; re-run that command (it reuses the trained model) to write it.")
    check_same_setting(path, results, {"dataset": dataset})
    if training["stopped_by"] != "early stopping":
        raise SystemExit(f"--converged_full={path}: the run hit its epoch cap ({training['epochs_trained']} epochs) "
                         "before early stopping; train it with a larger --epochs (a new run, resumable) first.")
    row = row_of("full", {"test": results["test"], "timings": {}, "peak_mem_mb": None}, n)
    row["method"] = (f"Full, converged (early stopping after {training['epochs_trained']} epochs, "
                     f"patience {training['stopping_step']}, best epoch {training['best_epoch']})")
    row["training"] = training
    row["setting"] = {k: results.get(k) for k in ("dataset", "model", "seed")}
    return row


def check_same_setting(path, results, wanted):
    for key, value in wanted.items():
        if str(results.get(key)) != str(value):
            raise SystemExit(f"--converged_full={path}: its {key} is {results.get(key)!r}, this table's is {value!r}.")


def plot(rows, full, path, title):
    fig, ax = figure((10, 0.5 * len(rows) + 1.8))
    names = [r["method"] for r in rows]
    ax.barh(names, [r["ndcg@10"] for r in rows], xerr=[r.get("ndcg@10_std") or 0 for r in rows],
            color=["tab:gray" if r["family"] == "teacher-assisted" else "tab:blue" for r in rows])
    ax.axvline(full, color="black", linestyle="--", label=f"Full {full:.4f}")
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax.set_xlabel("test NDCG@10 (mean ± std over draws x evaluation seeds)")
    save(fig, path, title, legend={"loc": "lower right"}, bbox_inches="tight")


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--n_sequences", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per set")
    parser.add_argument("--selection_seeds", type=int, default=3, help="user draws (selection_seed = seed + i)")
    parser.add_argument("--draw_seed", type=int, default=None,
                        help="first user draw's selection_seed (default: --seed); new draws, same teacher")
    parser.add_argument("--storages", default="topk,text_code,teacher")
    parser.add_argument("--methods", default="random_kd", help="teacher-labelled methods (random_kd first)")
    parser.add_argument("--label_topk", type=int, default=10, help="top-k labels; also text_code's byte budget")
    parser.add_argument("--reference_storage", default="topk")
    parser.add_argument("--foster_draws", type=int, default=0,
                        help="add FOSTER-N (the paper's method) over this many of the draws (0: no row)")
    parser.add_argument("--converged_full", default=None, metavar="RESULTS_JSON",
                        help="results.json of --method=full ended by early stopping: the headline's Full row")
    parser.add_argument("--runs", action="append", default=[], metavar="STORAGE:DIR",
                        help="an existing paper_table work dir for STORAGE (read, completed if needed)")
    parser.add_argument("--work_dir", default=None, help="default outputs/label_storage/<dataset>")
    parser.add_argument("--out", default="benchmarks/results/label-storage")
    args, run_options = parse(parser, argv)
    options = {"dataset": args.dataset, "n_sequences": args.n_sequences, "distilled_eval_seeds": args.seeds,
               "label_topk": args.label_topk, **run_options}
    storages = [s for s in args.storages.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    if methods[0] != "random_kd" or args.reference_storage not in storages:
        parser.error("--methods must start with random_kd and --storages must hold --reference_storage "
                     "(they are the IOR references)")
    base_dir = args.work_dir or os.path.join("outputs", "label_storage", args.dataset)
    dirs = {s: os.path.join(base_dir, s) for s in storages}
    for spec in args.runs:
        storage, _, folder = spec.partition(":")
        if storage not in dirs and storage != "foster" or not folder:
            parser.error(f"--runs={spec}: expected STORAGE:DIR with STORAGE one of {storages + ['foster']}")
        dirs[storage] = folder
    if args.foster_draws:
        dirs.setdefault("foster", dirs[args.reference_storage])
    else:
        dirs.pop("foster", None)
    converged = converged_full_row(args.converged_full, args.n_sequences, args.dataset) if args.converged_full else None
    seed = int(options.get("seed", 2020)) if args.draw_seed is None else args.draw_seed
    if args.draw_seed is not None:
        options["selection_seed"] = args.draw_seed

    results = {("random", "hard"): run_draws("random", options, dirs[args.reference_storage],
                                             args.selection_seeds, seed)}
    for storage in storages:
        for method in methods:
            results[(method, storage)] = run_draws(method, {**options, "label_storage": storage}, dirs[storage],
                                                   args.selection_seeds, seed)
    if args.foster_draws:  # the paper's method: its labels are its own soft sequences (label_storage "summary")
        results[("foster", "summary")] = run_draws("foster", options, dirs["foster"], args.foster_draws, seed)
    reference = results[("random_kd", args.reference_storage)]
    if converged:  # the teacher's model and seed, as its run resolved them
        check_same_setting(args.converged_full, converged["setting"],
                           {k: reference["config"][k] for k in ("model", "seed")})
    full = results[("random", "hard")]["table"]["Full"]
    teacher_row = row_of("full", {"test": full, "timings": {}, "peak_mem_mb": None}, args.n_sequences)
    teacher_row["method"] = f"Full, the sets' teacher (at most {reference['config']['epochs']} epochs)"
    rows = ([converged] if args.converged_full else []) + [teacher_row]
    for (method, storage), result in results.items():
        row = row_of(method, result, args.n_sequences)
        row["method"] = label_of(method, storage, args.n_sequences, args.label_topk)
        row["label_storage"] = storage
        if method != "random" and (method, storage) != ("random_kd", args.reference_storage):
            row["ior"] = improvement_over_random(result, reference)
            row["ior_reference"] = label_of("random_kd", args.reference_storage, args.n_sequences, args.label_topk)
            if method not in ("random_kd", "foster"):
                row["ior_same_labels"] = improvement_over_random(result, results[("random_kd", storage)])
        rows.append(row)

    command = command_of("label_storage.py", argv)
    table = markdown(rows, costs=True)
    same = [f"- {r['method']}: IOR vs Random-KD-{args.n_sequences} with the same labels "
            f"{r['ior_same_labels']['mean']:+.4f} ± {r['ior_same_labels']['std']:.4f} (n={r['ior_same_labels']['n']})"
            + (" **>2SE**" if r["ior_same_labels"]["beyond_2se"] else "")
            for r in rows if r.get("ior_same_labels")]
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.dataset)
    with open(stem + ".json", "w") as f:
        json.dump({"dataset": args.dataset, "n_sequences": args.n_sequences, "eval_seeds": args.seeds,
                   "selection_seeds": args.selection_seeds, "reference_storage": args.reference_storage,
                   "overrides": {k: v for k, v in options.items() if k not in ("dataset", "n_sequences")},
                   "work_dirs": dirs, "command": command, "rows": rows}, f, indent=2)
    write_table(stem + ".md", command, table + ("\n\n" + "\n".join(same) if same else ""))
    plot([r for r in rows if r["family"] != "full data"], full["ndcg@10"], stem + ".png",
         f"{args.dataset}: {args.n_sequences} windows, labels kept in different ways "
         f"({args.selection_seeds} draws x {args.seeds} seeds)")
    print(table + ("\n" + "\n".join(same) if same else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
