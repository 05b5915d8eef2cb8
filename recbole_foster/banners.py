"""What a run prints between RecBole's log lines: a banner per phase and the legend of the table.

Banners go to stdout (progress bars and RecBole's log go to stderr), one at the start of each
phase: text embeddings, the real-data run (trained now and "cached at", or "reused from"), the
method (selection or distillation) and each evaluation of a small set. They say what the phase
is, what it costs and what is cached, so a silent five minutes of epoch lines has a name.
"""

import re
import sys
import textwrap

from recbole_foster.config import uses_item_text
from recbole_foster.methods import METHODS

RULE = 78


def banner(title, *lines):
    """``== title ====`` and indented lines, flushed at once (progress bars interleave)."""
    print(f"\n== {title} " + "=" * max(3, RULE - len(title) - 4))
    for line in lines:
        if line:
            print(textwrap.fill(line, RULE + 20, initial_indent="   ", subsequent_indent="     ",
                                break_long_words=False, break_on_hyphens=False))
    sys.stdout.flush()


def _requires_text(config):
    return uses_item_text(config)


def _n(ctx):
    try:
        return int(ctx.config["n_sequences"])
    except (TypeError, ValueError, KeyError):
        return None


def phase_started(ctx, phase):
    """Called when ``ctx.timed(phase)`` opens: banners for the text embedding and each evaluation."""
    config = ctx.config
    if phase == "embed" and _requires_text(config):
        from recbole_foster.text_embedding import text_fields_of

        banner("Item text embeddings",
               f"{ctx.dataset.item_num - 1} items, text = {' + '.join(text_fields_of(config))}, "
               f"encoder {config['text_encoder']} ({config['text_pooling']} pooling)",
               f"computed once and cached in {config['text_cache_dir']} (keyed by encoder, fields and every text)")
    elif phase == "eval" and getattr(ctx, "method_banner_shown", False):
        seeds = int(config["distilled_eval_seeds"])
        first = int(config["seed"]) + 1000
        ctx.evaluations_announced = count = getattr(ctx, "evaluations_announced", 0) + 1
        expected = _evaluated_sets(ctx)
        which = f": {expected[count - 1]}" if count <= len(expected) else ""
        banner(f"Evaluation{which}",
               f"{seeds} fresh {config['model']} model{'s' if seeds > 1 else ''} (seeds {first}"
               f"{f'-{first + seeds - 1}' if seeds > 1 else ''}) trained on the small set only, "
               f"up to {config['distilled_steps']} steps;",
               f"the best check on real validation data ({config['valid_metric']}) is scored on the real test split.")


def _evaluated_sets(ctx):
    """The row labels of the sets a method evaluates, in order (a distillation also judges Random-N)."""
    config, n = ctx.config, _n(ctx)
    name = config["method"]
    if name == "eval":
        return ["the saved set"]
    labels = [METHODS[name].row_label(n)]
    if name in ("foster", "td3") and config["foster_compare_random"]:
        labels.append(METHODS["random"].row_label(n))
    return labels


def real_run_banner(ctx, folder, manifest=None):
    """The real-data run: reused from ``folder`` (``manifest`` given) or trained now and cached there."""
    config = ctx.config
    if manifest is not None:
        test = manifest.get("test", {})
        metric = config["valid_metric"].lower()
        score = f", test {metric} {test[metric]:.4f}" if metric in test else ""
        banner("Real-data run (Full, teacher, anchors): reused",
               f"reused from {folder} (best epoch {manifest.get('best_epoch')}{score});",
               "it was trained earlier with this data, model, training config and seed. "
               "Delete that folder to retrain.")
        return
    users = getattr(ctx.dataset, "user_num", 1) - 1
    banner("Real-data run (Full, teacher, anchors): training",
           f"{config['model']} on all real training data ({users} users, {ctx.dataset.item_num - 1} items), "
           f"up to {config['epochs']} epochs (early stop after {config['stopping_step']} without improvement).",
           f"Done once: cached at {folder}",
           "and reused by every later run with the same data, model, training config and seed.")


def method_banner(ctx):
    """Before the method runs: what it builds, from what."""
    config = ctx.config
    name = config["method"]
    method = METHODS[name]
    ctx.method_banner_shown = True
    n = _n(ctx)
    if name == "full":
        banner("Full", "the real-data run's own metrics: nothing more to train.")
        return
    if name == "eval":
        banner("Saved set", f"training on {config['synthetic']} (a set file is read as plain tensors; an exported folder through its atomic files), judged like any small set.")
        return
    summary = _with_n(method.summary, n)
    lines = [summary]
    if name in ("foster", "td3"):
        start = (f"warm start from the {METHODS['random'].row_label(n)} users' windows"
                 if config["foster_init"] == "real" else "random start")
        beside = f", and {METHODS['random'].row_label(n)} beside it." if config["foster_compare_random"] else "."
        lines.append(f"{config['foster_outer_steps']} outer steps, {start}, labels: foster_targets="
                     f"{config['foster_targets']}; then the set is saved (synthetic.pt) and evaluated{beside}")
    banner(method.row_label(n), *lines)


def _with_n(text, n):
    """A registry summary with its size placeholder (``n_sequences``, ``N``) filled in."""
    return text if n is None else re.sub(r"\bn_sequences\b|\bN\b", str(n), text)


def _describe(label, config):
    """What a row of the final table is, from the method registry."""
    n = None
    by_length = sorted(METHODS.values(), key=lambda m: -len(m.label))
    for method in by_length:
        suffix = label[len(method.label) + 1:] if label.startswith(method.label + "-") else ""
        if label == method.label or suffix.isdigit() or label == method.name:  # "Full-s" is not Full
            n = int(suffix) if suffix.isdigit() else config["n_sequences"]
            if method.name == "full":
                return f"{config['model']} trained on all real training data (the real-data run; also the teacher)"
            return _with_n(method.summary, n)
    if label.split("-")[0] in ("saved", "synthetic"):
        return f"the saved set {config['synthetic']}"
    return None


def table_legend(rows, config):
    """Lines that say what each row of the final table is and what ± means."""
    width = max(len(label) for label in rows)
    lines = []
    for label in rows:
        text = _describe(label, config)
        if text:
            lines.append(f"  {label:<{width}}  {text}")
    if any(k.endswith("_std") for metrics in rows.values() for k in metrics):
        seeds = config["distilled_eval_seeds"]
        lines.append(f"  ± = standard deviation over the {seeds} evaluation seeds (each a fresh model trained "
                     "on the small set only); a row without ± is one model.")
    return "\n".join(["", "Rows:"] + lines) if lines else ""
