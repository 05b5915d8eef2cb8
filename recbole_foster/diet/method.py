"""``--method=diet`` as a method of the registry: its settings, checks and banner (docs/diet.md)."""

import os

from recbole_foster.cli import CLIError
from recbole_foster.config import get_model
# the module, not its names: importing diet.pipeline first imports this module (through the
# method registry) while diet.pipeline is still half-initialised
import recbole_foster.diet.pipeline as pipeline
from recbole_foster.labels import get_storage, storage_names
from recbole_foster.methods.base import Method
from recbole_foster.methods.selection import PROPERTIES
from recbole_foster.model.students import UnsupportedModel, is_causal


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
        return (super().reads_item_text(config) or self._memory_storage(config).needs_item_text
                or any(getattr(self._model_class(name), "requires_item_text", False)
                       for name in self._rank_models(config)))

    @staticmethod
    def _rank_models(config):
        models = config["diet_rank_models"] or []
        return models if isinstance(models, (list, tuple)) else []

    @staticmethod
    def _causal(model_class):
        try:
            return is_causal(model_class)
        except UnsupportedModel:
            return False

    @staticmethod
    def _model_class(name):
        try:
            return get_model(name)
        except ValueError:
            return None  # reported by check()

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
        share = config["diet_memory_share"] or 0
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise CLIError(f"--diet_memory_share must be a fraction in [0, 1) of the training rows seen (0 = the fixed "
                           f"--diet_memory_size), got {share!r}.")
        if share and self._memory_storage(config).fixed_size:
            raise CLIError("--diet_memory_share needs labels that can grow with the memory (e.g. "
                           "--diet_label_storage=topk; text codes are fitted to a fixed memory size).")
        steps = config["diet_refine_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise CLIError(f"--diet_refine_steps must be a whole number >= 0 (0 = no refinement), got {steps!r}.")
        if steps and not self._memory_storage(config).refinable:
            raise CLIError("--diet_refine_steps refines top-k labels: it needs --diet_label_storage=topk (or "
                           "another storage marked refinable).")
        lr = config["diet_refine_lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise CLIError(f"--diet_refine_lr must be a positive number, got {lr!r}.")
        models = config["diet_rank_models"]
        if not isinstance(models, (list, tuple)) or len(set(models)) != len(models):
            raise CLIError(f"--diet_rank_models must be a list of distinct model names (e.g. "
                           f"\"['TextSASRec','TextGRU4Rec','TextNARM','SASRec']\"; [] = off), got {models!r}.")
        for name in models:
            model_class = self._model_class(name)
            if model_class is None or not self._causal(model_class):
                raise CLIError(f"--diet_rank_models: {name!r} is not a left-to-right RecBole sequential model this "
                               f"package trains on a memory (TextSASRec, TextGRU4Rec, TextNARM, SASRec, GRU4Rec, NARM).")
        if len(models) == 1:
            raise CLIError("--diet_rank_models needs at least 2 models to rank (or [] for no ranking check).")
        if (config["distilled_student_init"] or "fresh") != "fresh":
            raise CLIError("--method=diet judges its memory with fresh models only (its sets are self-contained); "
                           "drop --distilled_student_init.")

    def banner_lines(self, ctx):
        return self.label, [self.summary]

    def evaluated_sets(self, config, n):
        return []

    def run(self, ctx):
        return pipeline.DietRun(ctx, self.label).run()
