"""``stages.png`` beside results.json: per stage, every method's NDCG@10 and cumulative cost."""

import os

from recbole_foster.report import _pyplot, row_colors


def draw_stages(stages, path, metric="ndcg@10"):
    """Left: ``metric`` on each stage's report half; right: cumulative seconds (``cumulative_seconds``: a
    model per stage, with a set: keeping it current plus one fresh model trained on it; log scale)."""
    plt = _pyplot()
    labels = list(dict.fromkeys(label for stage in stages for label in stage["methods"]))
    colors = row_colors(labels)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in labels:
        points = [(s["stage"], s["methods"][label]) for s in stages if label in s["methods"]]
        xs = [x for x, _ in points]
        style = "--" if points and points[0][1].get("kind") == "model" else "-"
        left.plot(xs, [r["report"].get(metric) for _, r in points], style, marker="o", color=colors[label],
                  label=label)
        right.plot(xs, [max(r["cumulative_seconds"], 1e-3) for _, r in points], style, marker="o",
                   color=colors[label], label=label)
    left.set_title(f"{metric} on the period after each stage (report half)", fontsize=10)
    right.set_title("cumulative seconds for a model at every stage", fontsize=10)
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("stage")
        ax.set_xticks([s["stage"] for s in stages])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
