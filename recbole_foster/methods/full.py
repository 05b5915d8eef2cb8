"""``--method=full``: the model trained on all real training data, i.e. the real-data run itself."""

from recbole_foster.real_run import training_summary
from recbole_foster.results import metric_subset


def run_full(ctx):
    real_run = ctx.real_run
    return {
        "valid": metric_subset(real_run.manifest["valid"]),
        "test": metric_subset(real_run.manifest["test"]),
        "training": training_summary(real_run.manifest, ctx.config["epochs"], ctx.config["stopping_step"]),  # converged or capped
        "anchor_pool": real_run.folder,
        "reused_from_disk": not real_run.trained_now,
        "extended_from": real_run.manifest.get("extended_from"),  # the capped run it continued, if any
    }
