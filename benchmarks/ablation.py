"""The paper's ablations (Table 3, Fig. 3, Fig. 4) at a scale this machine can run.

    python benchmarks/ablation.py --dataset=ml-100k --foster_outer_steps=300 --seeds=1

Every row is one FOSTER run on the same data, Full run, warm start and evaluation protocol,
changing one switch: first-order BOME vs TD3's BPTT, items sampled on the fly vs a fixed K-means
subset, reset to anchors vs random init vs none, the DH weight beta, the reset interval R.
The last three rows re-check, on validation, defaults that were first chosen by looking at
test metrics (docs/experiments.md): the warm start from real windows, the anchor range, the
synthetic learning rate. The table's first column is validation NDCG@10: choose on it; the test
columns are reported, never used to choose.
Runs are resumable like paper_table.py. Writes ``benchmarks/results/ablation-<dataset>.json``/``.md``.
Extra ``--key=value`` go to every run (scale steps down for a CPU and say so).
"""

import json
import os
import re
import sys

from common import command_of, parse, parser_of, write_table  # beside this script
from paper_table import markdown, row_of, run_or_reuse

ABLATIONS = {
    "foster": ("foster", {}),
    "bptt (td3)": ("td3", {"td3_dh_weight": 0.1}),  # first-order off, the rest as FOSTER
    "kmeans items": ("foster", {"foster_item_sampling": "kmeans"}),
    "reset random": ("foster", {"foster_reset": "random", "foster_start": "random"}),
    "reset none": ("foster", {"foster_reset": "none", "foster_start": "random"}),  # random init once
    "beta 0 (no DH)": ("foster", {"foster_dh_weight": 0.0}),
    "beta 1": ("foster", {"foster_dh_weight": 1.0}),
    "R 10": ("foster", {"foster_reset_interval": 10}),
    "R 1000": ("foster", {"foster_reset_interval": 1000}),
    "init random": ("foster", {"foster_init": "random"}),  # TD3's random start instead of real windows
    "anchor start 0.5": ("foster", {"foster_anchor_start": 0.5}),  # reset only to the later half of the trajectory
    "synthetic lr 0.01": ("foster", {"foster_synthetic_lr": 0.01}),  # 10x the default 1e-3
}
VALID = "valid ndcg@10"  # the column to choose on


def slug(name):
    """A folder name for a row: 'bptt (td3)' -> 'bptt_td3'."""
    return re.sub(r"\W+", "_", name).strip("_")


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--n_sequences", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=1, help="evaluation seeds per run")
    parser.add_argument("--rows", default=",".join(ABLATIONS), help="comma-separated row names")
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--out", default="benchmarks/results")
    args, run_options = parse(parser, argv)  # the rest go to every run
    options = {"dataset": args.dataset, "n_sequences": args.n_sequences, "distilled_eval_seeds": args.seeds,
               **run_options}
    work_dir = args.work_dir or os.path.join("outputs", "ablation", args.dataset)
    names = [n for n in args.rows.split(",") if n]
    unknown = sorted(set(names) - set(ABLATIONS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ABLATIONS)}")
    rows = []
    for name in names:
        results = run_or_reuse(slug(name), options, work_dir, variants={slug(name): ABLATIONS[name]})
        row = row_of("foster", results, args.n_sequences)
        row["method"] = name
        row["final_entropy"] = results.get("final_entropy")
        row[VALID], row[f"{VALID}_std"] = results["valid"].get("ndcg@10"), results["valid"].get("ndcg@10_std")
        rows.append(row)
    command = command_of("ablation.py", argv)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"ablation-{args.dataset}.json"), "w") as f:
        json.dump({"dataset": args.dataset, "overrides": options, "command": command, "rows": rows}, f, indent=2)
    table = markdown(rows, metrics=(VALID, "recall@10", "ndcg@10", "recall@20", "ndcg@20"))
    write_table(os.path.join(args.out, f"ablation-{args.dataset}.md"), command, table)
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
