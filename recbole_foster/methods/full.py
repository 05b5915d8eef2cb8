"""``--method=full``: the model trained on all real training data, i.e. the real-data run itself."""

from recbole_foster.methods.base import Method
from recbole_foster.real_run import training_summary
from recbole_foster.results import metric_subset


class Full(Method):
    name, label = "full", "Full"
    summary = "train on all real training data (also the teacher)"
    small_set, models, uses_teacher, exports = False, "any", False, False

    def needs_teacher(self, config):
        return False

    def banner_lines(self, ctx):
        return "Full", ["the real-data run's own metrics: nothing more to train."]

    def evaluated_sets(self, config, n):
        return []

    def describe_row(self, config, n):
        return f"{config['model']} trained on all real training data (the real-data run; also the teacher)"

    def run(self, ctx):
        real_run = ctx.real_run
        return {
            "valid": metric_subset(real_run.manifest["valid"]),
            "test": metric_subset(real_run.manifest["test"]),
            "training": training_summary(real_run.manifest, ctx.config["epochs"], ctx.config["stopping_step"]),
            "anchor_pool": real_run.folder,
            "reused_from_disk": not real_run.trained_now,
            "extended_from": real_run.manifest.get("extended_from"),  # the capped run it continued, if any
        }
