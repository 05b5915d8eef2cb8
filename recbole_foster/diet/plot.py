"""``stages.png`` beside results.json: per stage, every method's NDCG@10 and cumulative cost, and with
the ranking check (``diet_rank_models``) each memory's Kendall tau against Full-s."""

import os

from recbole_foster.report import _pyplot, row_colors


def draw_stages(stages, path, metric="ndcg@10"):
    """Left: ``metric`` on each stage's report half; middle: cumulative seconds (``cumulative_seconds``: a
    model per stage, with a set: keeping it current plus one fresh model trained on it; log scale);
    right (when the run has a ranking check): per memory, Kendall's tau of the models' order on it
    against their order on Full-s's data (a filled marker: the same best model)."""
    plt = _pyplot()
    labels = list(dict.fromkeys(label for stage in stages for label in stage["methods"]))
    colors = row_colors(labels)
    ranked = [s for s in stages if s.get("ranking")]
    fig, axes = plt.subplots(1, 3 if ranked else 2, figsize=(18 if ranked else 12, 4.5))
    left, right = axes[0], axes[1]
    if ranked:
        tau_ax = axes[2]
        for label in dict.fromkeys(label for s in ranked for label in s["ranking"]["sets"]):
            points = [(s["stage"], s["ranking"]["sets"][label]) for s in ranked if label in s["ranking"]["sets"]]
            points = [(x, r) for x, r in points if r["tau"] is not None]
            tau_ax.plot([x for x, _ in points], [r["tau"] for _, r in points], "-", color=colors.get(label))
            for x, r in points:
                tau_ax.plot([x], [r["tau"]], "o", color=colors.get(label),
                            markerfacecolor=colors.get(label) if r["top1_agree"] else "white")
            tau_ax.plot([], [], "o-", color=colors.get(label), label=label)
        models = ", ".join(ranked[0]["ranking"]["models"])
        tau_ax.set_title(f"Kendall tau vs Full-s ({models}); filled = same best", fontsize=9)
        tau_ax.set_ylim(-1.05, 1.05)
        tau_ax.axhline(0, color="0.6", lw=0.8)
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
    for ax in axes:
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
