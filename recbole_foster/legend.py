"""The legend under a run's final table: what each row is (asked of the method that names it)."""

from recbole_foster.methods import METHODS


def _describe(label, config, methods):
    """What a row of the final table is, from the method registry."""
    by_length = sorted(methods.values(), key=lambda m: -len(m.label))
    for method in by_length:
        suffix = label[len(method.label) + 1:] if label.startswith(method.label + "-") else ""
        if label == method.label or suffix.isdigit() or label == method.name:  # "Full-s" is not Full
            n = int(suffix) if suffix.isdigit() else config["n_sequences"]
            return method.describe_row(config, n)
    if label.split("-")[0] in ("saved", "synthetic"):
        return f"the saved set {config['synthetic']}"
    return None


def table_legend(rows, config, methods=None):
    """Lines that say what each row of the final table is and what ± means."""
    methods = METHODS if methods is None else methods
    width = max(len(label) for label in rows)
    lines = []
    for label in rows:
        text = _describe(label, config, methods)
        if text:
            lines.append(f"  {label:<{width}}  {text}")
    if any(k.endswith("_std") for metrics in rows.values() for k in metrics):
        seeds = config["distilled_eval_seeds"]
        lines.append(f"  ± = standard deviation over the {seeds} evaluation seeds (each a fresh model trained "
                     "on the small set only); a row without ± is one model.")
    return "\n".join(["", "Rows:"] + lines) if lines else ""
