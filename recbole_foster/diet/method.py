"""``--method=diet`` as a method of the registry: its settings, checks and banner (docs/diet.md)."""

import os

from recbole_foster.cli import CLIError
# the module, not its names: importing diet.pipeline first imports this module (through the
# method registry) while diet.pipeline is still half-initialised
import recbole_foster.diet.pipeline as pipeline
from recbole_foster.labels import get_storage, storage_names
from recbole_foster.methods.base import Method
from recbole_foster.methods.selection import PROPERTIES


class Diet(Method):
    name, label = "diet", "DIET"
    summary = ("a streaming memory of real windows with stored labels, updated stage by stage over time by "
               "influence-aware addressing, beside Full-s, Fine-tune and Reservoir-KD (global_temporal only)")
    small_set, models, uses_teacher = False, "causal", False
    config_file = os.path.join(PROPERTIES, "diet.yaml")

    def label_storage(self, config):
        return get_storage(config["diet_label_storage"])

    def needs_teacher(self, config):
        return False  # its memories carry their labels

    def reads_item_text(self, config):
        return super().reads_item_text(config) or self._memory_storage(config).needs_item_text

    @staticmethod
    def _memory_storage(config):
        try:
            return get_storage(config["diet_label_storage"])
        except ValueError:
            return get_storage("topk")  # reported by check()

    def check(self, config):
        """Its protocol, stage count, update fraction, label storage and baselines."""
        protocol = config["eval_protocol"] or "loo"
        if protocol != "global_temporal":
            raise CLIError(f"--method=diet streams the training period in time stages: it needs "
                           f"--eval_protocol=global_temporal (this run: {protocol}).")
        stages = config["diet_stages"]
        if stages < 2:
            raise CLIError(f"--diet_stages must be at least 2 (a first stage and one update), got {stages}.")
        fraction = config["diet_update_fraction"]
        if fraction != "stream" and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                     or not 0 <= fraction <= 1):
            raise CLIError(f"--diet_update_fraction must be a fraction in [0, 1] or stream (the new stage's share "
                           f"of the rows seen), got {fraction!r}.")
        usable = [name for name in storage_names() if get_storage(name).memory]
        if config["diet_label_storage"] not in usable:
            raise CLIError(f"--diet_label_storage must be {' or '.join(usable)} (how the memories keep their "
                           f"labels), got {config['diet_label_storage']!r}.")
        baselines = config["diet_baselines"]
        if not isinstance(baselines, (list, tuple)) or any(b not in pipeline.BASELINES for b in baselines):
            raise CLIError(f"--diet_baselines must be a list of {', '.join(pipeline.BASELINES)} "
                           f"(e.g. \"['full','finetune']\"), got {baselines!r}.")
        if "foster" in baselines and config["model"] != "TextSASRec":
            raise CLIError(f"--diet_baselines with foster needs --model=TextSASRec (the distillation code is "
                           f"written for it); got --model={config['model']}.")
        if (config["distilled_student_init"] or "fresh") != "fresh":
            raise CLIError("--method=diet judges its memory with fresh models only (its sets are self-contained); "
                           "drop --distilled_student_init.")

    def banner_lines(self, ctx):
        return self.label, [self.summary]

    def evaluated_sets(self, config, n):
        return []

    def run(self, ctx):
        return pipeline.DietRun(ctx, self.label).run()
