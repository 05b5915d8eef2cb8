"""What a run prints between RecBole's log lines: a banner per phase.

Banners go to stdout (progress bars and RecBole's log go to stderr), one at the start of each
phase: text embeddings, the real-data run (trained now and "cached at", or "reused from"), the
method (its own :meth:`~recbole_foster.methods.base.Method.banner_lines`) and each evaluation of a
small set. They say what the phase is, what it costs and what is cached, so a silent five minutes
of epoch lines has a name. The legend under the final table is :mod:`recbole_foster.legend`.
"""

from recbole_foster.console import RULE, banner  # noqa: F401 - banner is this module's printer

__all__ = ["banner", "embedding_banner", "method_banner", "phase_started", "real_run_banner"]


def embedding_banner(config, dataset):
    """Before the item texts are embedded."""
    from recbole_foster.text_embedding import text_fields_of

    banner("Item text embeddings",
           f"{dataset.item_num - 1} items, text = {' + '.join(text_fields_of(config))}, "
           f"encoder {config['text_encoder']} ({config['text_pooling']} pooling)",
           f"computed once and cached in {config['text_cache_dir']} (keyed by encoder, fields and every text)")


def phase_started(ctx, phase):
    """Called when ``ctx.timed(phase)`` opens: a banner for each evaluation of the method's sets."""
    if phase != "eval" or ctx.real_run is None and ctx.saved_set is None:  # before the method's inputs: no method yet
        return
    config = ctx.config
    seeds = int(config["distilled_eval_seeds"])
    first = int(config["seed"]) + 1000
    ctx.evaluations_announced = count = ctx.evaluations_announced + 1
    n = ctx.n_sequences if ctx.method.small_set else None
    expected = ctx.method.evaluated_sets(config, n)
    which = f": {expected[count - 1]}" if count <= len(expected) else ""
    banner(f"Evaluation{which}",
           f"{seeds} fresh {config['model']} model{'s' if seeds > 1 else ''} (seeds {first}"
           f"{f'-{first + seeds - 1}' if seeds > 1 else ''}) trained on the small set only, "
           f"up to {config['distilled_steps']} steps;",
           f"the best check on real validation data ({config['valid_metric']}) is scored on the real test split.")


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
    """Before the method runs: what it builds, from what (the method's own lines)."""
    title, lines = ctx.method.banner_lines(ctx)
    banner(title, *lines)
