"""``report.png`` beside ``results.json``: what a run measured, as a picture.

Top: the test metrics of every row of the run's table (Full, the method's set, Random-N beside
FOSTER) as grouped bars, with the standard deviation over evaluation seeds as error bars.
Below, for a distillation run: the per-step curves of ``results["history"]``: the outer loss f,
BOME's value gap q (dashed zero line; the share of steps with q < 0, results.json's
``q_negative_share`` over every step, not the plotted subsample), lambda and the mean
entropy of the synthetic distributions (of the separate targets too, when there are any).

:func:`write_report` is called after every run (``run.py``); ``python -m recbole_foster.plot``
draws several ``results.json`` side by side with the same pieces.
"""

import os

from recbole_foster.results import REPORTED_METRICS

HISTORY_PANELS = [  # (history key, title, extra key drawn in the same panel)
    ("f", "outer loss f", None),
    ("q", "value gap q (BOME)", None),
    ("lambda", "lambda", None),
    ("entropy", "entropy of the synthetic data (nats)", "target_entropy"),
]
FAMILY_COLORS = [  # row-label prefix -> colour (longest prefix first)
    ("Random-KD", "#8c564b"), ("Random", "#ff7f0e"), ("FOSTER", "#1f77b4"), ("TD3", "#9467bd"),
    ("K-Center", "#2ca02c"), ("DEALRec", "#98df8a"), ("GORACS", "#bcbd22"), ("Full", "#7f7f7f"),
    ("saved", "#17becf"), ("synthetic", "#17becf"),
]
OTHER_COLORS = ["#e377c2", "#d62728", "#aec7e8", "#ffbb78", "#c5b0d5", "#c49c94"]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def table_rows(results):
    """``{row label: test metrics}`` of a results dict (its ``table``, or the method's own metrics)."""
    return dict(results.get("table") or {results.get("method", "run"): results.get("test", {})})


def metrics_of(rows, wanted=None):
    """The reported metrics present in any row, in REPORTED_METRICS order."""
    wanted = wanted or REPORTED_METRICS
    return [m for m in wanted if any(m in r for r in rows.values())]


def row_colors(labels):
    colors, spare = {}, iter(OTHER_COLORS * 10)
    for label in labels:
        for prefix, color in FAMILY_COLORS:
            if label.lower().startswith(prefix.lower()) and color not in colors.values():
                colors[label] = color
                break
        else:
            colors[label] = next(spare)
    return colors


def draw_metrics(ax, rows, metrics=None, title=None):
    """Grouped bars: one group per metric, one bar per row, std as error bars."""
    metrics = metrics_of(rows, metrics)
    labels = list(rows)
    colors = row_colors(labels)
    width = 0.8 / max(1, len(labels))
    top = 0.0
    for j, label in enumerate(labels):
        values = [rows[label].get(m) for m in metrics]
        stds = [rows[label].get(m + "_std") for m in metrics]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(metrics))]
        heights = [v if v is not None else 0.0 for v in values]
        errors = [s if s is not None else 0.0 for s in stds]
        ax.bar(xs, heights, width * 0.92, yerr=errors if any(errors) else None, capsize=2,
               color=colors[label], label=label, error_kw={"elinewidth": 0.8})
        for x, v, s in zip(xs, values, errors):
            if v is not None:
                ax.text(x, v + s, f"{v:.4f}", ha="center", va="bottom", fontsize=6, rotation=90)
                top = max(top, v + s)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(metrics)
    legend_lines = -(-len(labels) // 4)
    ax.set_ylim(0, top * (1.15 + 0.1 * legend_lines) if top > 0 else 1)  # room for the legend
    ax.set_ylabel("test metric (full ranking)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(labels), 4), loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)


def q_title(title, history, negative_share=None):
    """The q panel's title with the share of steps with q < 0: the run's own ``q_negative_share``
    (every step, as the log reports it); without it, the share of the recorded points."""
    if negative_share is not None:
        return f"{title}: q < 0 in {negative_share:.0%} of steps"
    gaps = [r["q"] for r in history if r.get("q") is not None]
    return f"{title}: q < 0 in {sum(g < 0 for g in gaps) / len(gaps):.0%} of plotted steps"


def draw_history(axes, histories, negative_share=None):
    """One panel per HISTORY_PANELS entry; ``histories`` = ``{label: [record, ...]}``;
    ``negative_share``: a single run's ``q_negative_share`` (results.json)."""
    colors = row_colors(list(histories))
    for ax, (key, title, extra) in zip(axes, HISTORY_PANELS):
        drawn = extra_drawn = False
        for label, history in histories.items():
            points = [(r["step"], r[key]) for r in history if r.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                name = label if len(histories) > 1 else key
                ax.plot(xs, ys, color=colors[label], linewidth=1, label=name)
                drawn = True
            target = [(r["step"], r[extra]) for r in history if extra and r.get(extra) is not None]
            if target:
                xs, ys = zip(*target)
                ax.plot(xs, ys, color=colors[label], linewidth=1, linestyle=":", label=f"{label} targets"
                        if len(histories) > 1 else "targets")
                extra_drawn = True
        if key == "q" and drawn:
            ax.axhline(0.0, color="black", linewidth=0.7, linestyle="--")
            if len(histories) == 1:
                ax.set_title(q_title(title, next(iter(histories.values())), negative_share), fontsize=9)
            else:
                ax.set_title(title, fontsize=9)
        else:
            ax.set_title(title, fontsize=9)
        if not drawn:
            ax.text(0.5, 0.5, "not recorded\nby this method", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8, color="gray")
        ax.set_xlabel("outer step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if drawn and (len(histories) > 1 or extra_drawn):
            ax.legend(fontsize=6)


def run_title(results):
    n = results.get("n_sequences")
    seeds = len(results.get("eval_seeds") or []) or (results.get("config") or {}).get("distilled_eval_seeds")
    parts = [str(results.get("dataset")), str(results.get("model")),
             f"--method={results.get('method')}" + (f" (n={n})" if n else ""), f"seed {results.get('seed')}"]
    note = "test split, full ranking over all items"
    if any(k.endswith("_std") for r in table_rows(results).values() for k in r):
        note += f"; error bars: std over {seeds} evaluation seeds"
    return " · ".join(parts) + "\n" + note


def write_report(results, output_dir, name="report.png"):
    """Draw ``results`` into ``output_dir/name``; returns the path."""
    plt = _pyplot()
    history = results.get("history") or []
    rows = table_rows(results)
    if history:
        fig = plt.figure(figsize=(12, 8.5))
        grid = fig.add_gridspec(2, 4, height_ratios=[1.25, 1], hspace=0.35, wspace=0.3)
        draw_metrics(fig.add_subplot(grid[0, :]), rows, title=run_title(results))
        draw_history([fig.add_subplot(grid[1, i]) for i in range(4)], {results.get("method", "run"): history},
                     results.get("q_negative_share"))
    else:
        fig, ax = plt.subplots(figsize=(10, 4.8))
        draw_metrics(ax, rows, title=run_title(results))
        fig.tight_layout()
    path = os.path.join(output_dir, name)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def report_after_run(results, output_dir):
    """:func:`write_report` at the end of a run: prints ``report: <path>``; a drawing problem is a
    warning, never a failed run (results.json is already written)."""
    import sys

    try:
        print(f"report: {write_report(results, output_dir)}", flush=True)
    except Exception as error:  # noqa: BLE001 - the run's results are on disk; the picture is extra
        print(f"warning: report.png could not be drawn ({type(error).__name__}: {error}).", file=sys.stderr)
