"""Stage 7 of a run: ``results.json`` and the table printed at the end."""

import json
import os

REPORTED_METRICS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@10", "hit@10"]


def metric_subset(result):
    return {k: float(result[k]) for k in REPORTED_METRICS if k in result}


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def format_table(rows):
    """Markdown table of {name: metrics dict}."""
    header = "| method | " + " | ".join(REPORTED_METRICS) + " |"
    lines = [header, "|" + "---|" * (len(REPORTED_METRICS) + 1)]
    for name, metrics in rows.items():
        cells = []
        for k in REPORTED_METRICS:
            v, std = metrics.get(k), metrics.get(k + "_std")
            cells.append("-" if v is None else (f"{v:.4f}" if std is None else f"{v:.4f} ± {std:.4f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(output_dir, results):
    """Write ``results.json`` atomically; returns its path."""
    path = os.path.join(output_dir, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(jsonable(results), f, indent=2)
    os.replace(tmp, path)
    return path
