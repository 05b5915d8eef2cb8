"""Several runs side by side: ``python -m recbole_foster.plot a/results.json b/results.json -o runs.png``.

Top: every row of every run's table as grouped bars per metric (error bars: std over evaluation
seeds). A row that several runs share with the same numbers (the Full row of runs on the same
real-data run) is drawn once; rows with the same name but different numbers are told apart by
their run's folder. Below, when any run has a distillation history: its f, q, lambda and
entropy curves, one line per run.
"""

import argparse
import json
import os
import sys

from recbole_foster.report import _pyplot, draw_history, draw_metrics, table_rows
from recbole_foster.results import REPORTED_METRICS


def run_tag(path):
    """A short name for a run: the last two folders of its results.json (``foster-20/seed2020``)."""
    folder = os.path.dirname(os.path.abspath(path))
    parent, leaf = os.path.split(folder)
    return f"{os.path.basename(parent)}/{leaf}"


def combined_rows(runs):
    """``{label: metrics}`` over ``[(path, results), ...]``, duplicates merged, clashes disambiguated."""
    datasets = {r.get("dataset") for _, r in runs}
    seen, rows = {}, {}
    for path, results in runs:
        for label, metrics in table_rows(results).items():
            name = label if len(datasets) == 1 else f"{results.get('dataset')}: {label}"
            if name in seen:
                if seen[name] == metrics:
                    continue
                name = f"{name} ({run_tag(path)})"
                if name in rows:  # the same folder twice
                    continue
            seen.setdefault(name, metrics)
            rows[name] = metrics
    return rows


def load(path):
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"error: {path}: cannot read a results.json ({error}).") from None
    if not isinstance(results, dict) or "test" not in results and "table" not in results:
        raise SystemExit(f"error: {path} is not a recbole_foster results.json (no 'test' or 'table').")
    return results


def plot_runs(paths, out, metrics=None):
    """Draw the runs of ``paths`` into ``out``; returns ``out``."""
    plt = _pyplot()
    runs = [(p, load(p)) for p in paths]
    rows = combined_rows(runs)
    histories, shares = {}, []
    for path, results in runs:
        if results.get("history"):
            shares.append(results.get("q_negative_share"))
            label = next((k for k in table_rows(results) if k.lower().startswith(str(results.get("method")).lower())),
                         results.get("method"))
            histories[label if label not in histories else f"{label} ({run_tag(path)})"] = results["history"]
    datasets = sorted({str(r.get("dataset")) for _, r in runs})
    title = f"{len(runs)} run{'s' if len(runs) > 1 else ''} on {', '.join(datasets)} · test split, full ranking; " \
            "error bars: std over evaluation seeds"
    if histories:
        fig = plt.figure(figsize=(max(12, 1.2 * len(rows) + 6), 8.5))
        grid = fig.add_gridspec(2, 4, height_ratios=[1.25, 1], hspace=0.35, wspace=0.3)
        draw_metrics(fig.add_subplot(grid[0, :]), rows, metrics, title=title)
        draw_history([fig.add_subplot(grid[1, i]) for i in range(4)], histories,
                     shares[0] if len(shares) == 1 else None)
    else:
        fig, ax = plt.subplots(figsize=(max(10, 1.2 * len(rows) + 4), 4.8))
        draw_metrics(ax, rows, metrics, title=title)
        fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_foster.plot", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("results", nargs="+", help="results.json files of runs")
    parser.add_argument("-o", "--out", default="runs.png", help="the PNG to write (default runs.png)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metrics to draw (default: " + ",".join(REPORTED_METRICS) + ")")
    args = parser.parse_args(argv)
    for path in args.results:
        if not os.path.isfile(path):
            parser.error(f"{path}: no such file")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    print(plot_runs(args.results, args.out, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
