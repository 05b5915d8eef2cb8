"""RecBole plugin layer: a Config that knows the plugin's models, and model/trainer lookup.

RecBole 1.2.1 has no model registry: ``recbole.utils.get_model`` only searches RecBole's own
modules. As in RecBole-GNN, the plugin ships a ``Config`` subclass that resolves model names
through :func:`get_model` (plugin first, then RecBole) and layers the plugin's YAML defaults
(``properties/``) between RecBole's defaults and the user's files and overrides.
"""

import importlib
import os

from recbole.config import Config
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_foster import compat

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")  # package data
# properties/overall/*.yaml, loaded in this order (no key is in two of them).
OVERALL_FILES = ("recbole", "text", "real_run", "foster", "td3", "coreset", "evaluation", "diet", "popularity", "auto")
# those of them that hold one method's own settings (Method.config_file)
METHOD_FILES = ("foster", "td3", "coreset", "diet", "popularity", "auto")

# eval_protocol: global_temporal cuts all interactions at these quantiles of time (the paper's 8:1:1)
GLOBAL_TEMPORAL_RATIOS = (0.8, 0.1, 0.1)

PLUGIN_MODELS = {
    "TextSASRec": "recbole_foster.model.text_sasrec",
    "TextGRU4Rec": "recbole_foster.model.text_models",
    "TextNARM": "recbole_foster.model.text_models",
    "TextBERT4Rec": "recbole_foster.model.text_models",
}


def get_model(model_name):
    """Return the model class for ``model_name``: the plugin's models first, then RecBole's."""
    if model_name in PLUGIN_MODELS:
        return getattr(importlib.import_module(PLUGIN_MODELS[model_name]), model_name)
    try:
        with compat.keep_anomaly_detection():
            return recbole_get_model(model_name)
    except (ValueError, ImportError):  # ImportError: RecBole's search imports optional exlib packages
        known = ", ".join(sorted(PLUGIN_MODELS))
        raise ValueError(
            f"`model` [{model_name}] is neither a recbole_foster model ({known}) nor a RecBole "
            "model. Check the spelling (model names are case-sensitive, e.g. TextSASRec, SASRec)."
        ) from None


def uses_item_text(config):
    """Whether a run of this config reads the item texts: a text-based model, or labels kept as
    codes over the item texts (``label_storage`` whose storage ``needs_item_text``). A method adds
    its own reasons (:meth:`recbole_foster.methods.base.Method.reads_item_text`)."""
    from recbole_foster.labels import get_storage

    if getattr(config.model_class, "requires_item_text", False):
        return True
    try:
        return get_storage(config["label_storage"]).needs_item_text
    except ValueError:
        return False  # reported by validation


def get_trainer(model_type, model_name):
    """Return the trainer class: the plugin's checkpoint-safe trainer for every sequential model."""
    from recbole_foster.trainer import CheckpointSafeTrainer

    trainer_class = recbole_get_trainer(model_type, model_name)
    if trainer_class.__name__ == "Trainer":
        return CheckpointSafeTrainer
    return trainer_class


def method_setting_keys(config=None):
    """Every key of a method's own YAML (the built-in ones, and ``config``'s ``method_files`` of an
    outside method): a method's settings never change the real-data run, so a new method cannot
    move that run's cache key."""
    import yaml

    paths = [os.path.join(PROPERTIES_DIR, "overall", f"{name}.yaml") for name in METHOD_FILES]
    keys = set()
    for path in paths + list(getattr(config, "method_files", ())):
        with open(path) as f:
            keys |= set(yaml.safe_load(f) or {})
    return keys


class FosterConfig(Config):
    """RecBole ``Config`` that finds plugin models and reads ``properties/`` of this plugin.

    Command-line parsing is left to ``run_foster.py``: RecBole's own ``sys.argv`` scan would pick
    up the plugin's flags (``--method``...) and reject values it cannot parse. ``method_files``:
    YAML files of a method's own defaults (:attr:`recbole_foster.methods.base.Method.config_file`),
    layered over the plugin's ``overall/`` files.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, method_files=()):
        self.method_files = [f for f in method_files if f]
        super().__init__(model, dataset, config_file_list, config_dict)

    def compatibility_settings(self):
        compat.apply()
        super().compatibility_settings()

    def _load_cmd_line(self):
        return dict()

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model", "TextSASRec")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _set_default_parameters(self):
        """RecBole's defaults, then the split ``eval_protocol: global_temporal`` implies, pinned here
        so that nothing edits the config once it has been validated."""
        super()._set_default_parameters()
        if self.final_config_dict.get("eval_protocol") == "global_temporal":
            eval_args = dict(self.final_config_dict["eval_args"])
            eval_args["split"] = {"global_temporal": list(GLOBAL_TEMPORAL_RATIOS)}
            self.final_config_dict["eval_args"] = eval_args

    def _load_internal_config_dict(self, model, model_class, dataset):
        """RecBole's defaults < plugin ``overall/`` (``OVERALL_FILES`` order) < plugin model yaml
        < plugin dataset yaml; RecBole then puts the user's files and ``config_dict`` on top."""
        super()._load_internal_config_dict(model, model_class, dataset)
        for name in OVERALL_FILES:  # always there: a missing one is a broken install, not a default
            self._update_internal_config_dict(os.path.join(PROPERTIES_DIR, "overall", f"{name}.yaml"))
        for path in getattr(self, "method_files", ()):
            self._update_internal_config_dict(path)
        for path in (
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
        ):
            if os.path.isfile(path):
                self._update_internal_config_dict(path)
