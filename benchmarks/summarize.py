"""Markdown table from results.json files: one protocol, mean ± std over evaluation seeds.

    python benchmarks/summarize.py outputs/ml-100k/TextSASRec/foster-20/seed2020/results.json [...]

A FOSTER run's results.json holds Full, FOSTER-N and Random-N; other runs add one row each.
"""

import json
import sys

METRICS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]


def cell(metrics, key):
    value, std = metrics.get(key), metrics.get(key + "_std")
    if value is None:
        return "-"
    return f"{value:.4f}" if std is None else f"{value:.4f} ± {std:.4f}"


def rows_of(results):
    name = results["method"]
    if name == "foster":
        n = results["n_sequences"]
        full = results["full"]["test"]
        distill = results["timings"].get("distill")
        yield "Full", full, None, None
        if results.get("random"):
            yield f"Random-{n}", results["random"]["test"], None, None
        yield f"FOSTER-{n}", results["test"], distill, results["peak_mem_mb"]
    else:
        label = {"full": "Full", "random": f"Random-{results['n_sequences']}"}.get(name, name)
        if results.get("model") not in (None, "TextSASRec"):
            label += f" ({results['model']})"
        yield label, results["test"], None, None


def main(paths):
    print("| data | " + " | ".join(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS)
          + " | distill time (s) | peak RSS (MB) |")
    print("|---" * (len(METRICS) + 3) + "|")
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        for label, metrics, seconds, memory in rows_of(results):
            extra = [f"{seconds:.0f}" if seconds else "-", f"{memory:.0f}" if memory else "-"]
            print(f"| {label} | " + " | ".join(cell(metrics, m) for m in METRICS) + " | " + " | ".join(extra) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
