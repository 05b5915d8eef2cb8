"""Every input of a run checked before any data is loaded or anything is written.

:func:`validate_run` is called by ``run.prepare`` right after the config is built and before the
output folder exists; each problem is one :class:`~recbole_foster.cli.CLIError` or
:class:`~recbole_foster.errors.DatasetError` line that ``run_foster.py`` prints without a
traceback (exit code 2):

* unknown keys: a ``--key`` that is neither a RecBole nor a plugin config key (see
  :func:`known_keys`), with the closest known key suggested;
* values: positive integers, non-negative numbers, booleans, one-of choices;
* files: ``--synthetic`` must be a recbole_foster set (read as plain tensors only), a local
  ``--text_encoder`` path must exist (``--config_files`` are checked when the config is built);
* combinations: ``--synthetic`` only for a method that reads it, ``--resume`` only for a
  resumable method, ``--export_atomic`` only for a method that exports a set; then the method's
  own :meth:`~recbole_foster.methods.base.Method.check`;
* the dataset's atomic files (:mod:`recbole_foster.dataset.atomic_files`): headers, columns to
  load, malformed lines.

:func:`make_output_dir` creates the output folder (and remembers which folders it created);
:func:`remove_empty_output_dirs` removes them again when a run failed before writing anything.
"""

import difflib
import importlib
import os

from recbole_foster.cli import CLIError
from recbole_foster.methods.base import MODEL_SUPPORT

# Keys RecBole reads without a default in its YAML files (so they are not in the resolved config
# unless given): distributed settings, the file encoding, the per-split negative sampling.
RECBOLE_KEYS_WITHOUT_DEFAULT = ("encoding", "nproc", "world_size", "offset", "ip", "port", "local_rank",
                                "valid_neg_sample_args", "test_neg_sample_args")
# Names people reach for that are not config keys, and what to use instead.
HINTS = {"device": "use_gpu / gpu_id", "gpu": "use_gpu / gpu_id", "lr": "learning_rate",
         "batch_size": "train_batch_size"}

POSITIVE_INTS = (
    "epochs", "train_batch_size", "eval_batch_size", "MAX_ITEM_LIST_LENGTH", "distilled_eval_seeds",
    "distilled_steps", "distilled_batch_size", "distilled_eval_every", "distilled_patience", "foster_inner_steps",
    "foster_reset_interval", "foster_checkpoint_every", "foster_user_rank", "foster_time_rank", "foster_seq_len",
    "foster_real_batch_size", "n_sampled_items", "text_max_tokens", "text_batch_size", "td3_window",
    "label_topk", "label_model_rank", "label_model_steps", "n_sequences", "diet_stages", "diet_memory_size", "diet_epochs",
)
NON_NEGATIVE_INTS = ("foster_outer_steps", "label_model_fit_windows", "foster_target_fit_steps", "td3_max_skip", "stopping_step", "seed",
                     "selection_seed", "diet_stop_after")
POSITIVE_NUMBERS = ("learning_rate", "distilled_lr", "foster_inner_lr", "foster_temperature", "td3_inner_lr")
NON_NEGATIVE_NUMBERS = ("weight_decay", "distilled_weight_decay", "foster_dh_weight", "foster_eta",
                        "foster_synthetic_lr", "foster_model_lr", "foster_fm_weight", "diet_replay_weight")
BOOLEANS = ("resume", "verbose", "skip_malformed", "train_window", "foster_compare_random", "show_progress",
            "reproducibility", "use_gpu", "set_standalone")
# key: (module, name of its tuple/dict of allowed values); a missing name skips the check (tested)
CHOICES = {
    "eval_protocol": ("recbole_foster.dataset.protocol", "EVAL_PROTOCOLS"),
    "text_pooling": ("recbole_foster.text_embedding", "POOLINGS"),
    "foster_targets": ("recbole_foster.label_modes", "MODES"),
    "foster_init": ("recbole_foster.methods.distillation", "INITS"),
    "foster_reset": ("recbole_foster.distill.loop", "RESET_MODES"),
    "foster_start": ("recbole_foster.distill.loop", "START_MODES"),
    "foster_item_sampling": ("recbole_foster.distill.loop", "ITEM_SAMPLING_MODES"),
    "set_precision": ("recbole_foster.distill.precision", "PRECISIONS"),
    "td3_items": ("recbole_foster.distill.td3", "TD3_ITEM_MODES"),
    "label_storage": ("recbole_foster.labels", "storage_names"),
    "diet_addressing": ("recbole_foster.diet.addressing", "ADDRESSING_MODES"),
    "real_run_extend": ("recbole_foster.real_run", "EXTEND_MODES"),
}
LITERAL_CHOICES = {"foster_export_mode": ("top1", "sample")}


# ----- unknown keys -----
def known_keys(config, plugin_keys=()):
    """Keys a ``--key=value`` may name: every key of the resolved defaults (RecBole's YAML files,
    the plugin's ``properties/``, the model's and dataset's YAML), the user's ``--config_files``,
    the plugin's run keys and the few RecBole keys without a default.

    RecBole's ``Config`` accepts any key, so the config built *with* the command line cannot tell
    a typo from a key; its ``internal_config_dict`` (defaults) and ``file_config_dict`` (YAML
    files) do not contain the command line, so they can.
    """
    return (set(config.internal_config_dict) | set(config.file_config_dict) | set(plugin_keys)
            | set(RECBOLE_KEYS_WITHOUT_DEFAULT) | {"model", "dataset", "config_files"})


def check_known_keys(config, options, plugin_keys=()):
    known = known_keys(config, plugin_keys)
    for key in options:
        if key in known:
            continue
        close = [k for k in sorted(known) if k.lower() == key.lower()] or \
            difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = HINTS.get(key) or (close[0] if close else None)
        suggestion = f" Did you mean --{hint}?" if hint else ""
        raise CLIError(f"unknown option --{key}: not a RecBole or recbole_foster config key.{suggestion} "
                       "(--help lists the main options; plugin keys: recbole_foster/properties/.)")


# ----- values -----
def _name(key, options):
    return f"--{key}" if key in options else key


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_values(config, options):
    def value(key):
        return config[key] if key in config.final_config_dict else None

    for key in POSITIVE_INTS:
        v = value(key)
        if v is not None and (not _is_int(v) or v < 1):
            raise CLIError(f"{_name(key, options)} must be a positive integer, got {v!r}.")
    for key in NON_NEGATIVE_INTS:
        v = value(key)
        if v is not None and (not _is_int(v) or v < 0):
            raise CLIError(f"{_name(key, options)} must be an integer >= 0, got {v!r}.")
    for key in POSITIVE_NUMBERS:
        v = value(key)
        if v is not None and (not _is_number(v) or v <= 0):
            raise CLIError(f"{_name(key, options)} must be a number > 0, got {v!r}.")
    for key in NON_NEGATIVE_NUMBERS:
        v = value(key)
        if v is not None and (not _is_number(v) or v < 0):
            raise CLIError(f"{_name(key, options)} must be a number >= 0, got {v!r}.")
    v = value("foster_anchor_start")
    if v is not None and (not _is_number(v) or not 0 <= v <= 1):
        raise CLIError(f"{_name('foster_anchor_start', options)} must be a fraction in [0, 1], got {v!r}.")
    for key in BOOLEANS:
        v = value(key)
        if v is not None and not isinstance(v, bool):
            raise CLIError(f"{_name(key, options)} must be True or False, got {v!r}.")
    for key, choices in {**{k: allowed_values(k) for k in CHOICES}, **LITERAL_CHOICES}.items():
        v = value(key)
        if choices is not None and v is not None and v not in choices:
            raise CLIError(f"{_name(key, options)} must be one of {', '.join(map(str, choices))}; got {v!r}.")
    model_class = getattr(config, "model_class", None)
    loss_types = getattr(importlib.import_module(model_class.__module__), "LOSS_TYPES", None) if model_class else None
    if loss_types and getattr(model_class, "requires_item_text", False) and value("loss_type") not in loss_types:
        raise CLIError(f"{_name('loss_type', options)} must be one of {', '.join(loss_types)} for "
                       f"{config['model']}; got {value('loss_type')!r}.")


def allowed_values(key):
    """The values a choice key accepts, read from the module that owns them (None if it has no such list)."""
    module, name = CHOICES[key]
    values = getattr(importlib.import_module(module), name, None)
    if callable(values):  # a registry: the names it holds now
        values = values()
    return None if values is None else tuple(values)


# ----- files and combinations -----
def check_saved_set_file(path):
    """``--synthetic`` names a recbole_foster set: read with ``torch.load(weights_only=True)`` or
    safetensors and a header of a known format (:func:`recbole_foster.distill.artifacts.read_set`), or a folder written
    by ``--export_atomic`` (``<name>/<name>.inter``, its soft-labels sidecar read the same safe way);
    never executes anything in the file, and never advises disabling safe loading."""
    from recbole_foster.distill.artifacts import (
        NotASet, atomic_inter_file, read_set, read_soft_labels, soft_labels_file,
    )

    if os.path.isdir(path):  # a set exported by --export_atomic: <name>/<name>.inter (+ its soft-labels sidecar)
        if not os.path.isfile(atomic_inter_file(path)):
            raise CLIError(f"--synthetic={path} is a folder without {os.path.basename(atomic_inter_file(path))}; "
                           "pass a set file (synthetic.pt or set.pt) or a folder written by --export_atomic.")
        if os.path.isfile(soft_labels_file(path)):
            try:
                read_soft_labels(soft_labels_file(path))
            except NotASet as error:
                raise CLIError(f"--synthetic: {error}") from None
        return
    if not os.path.isfile(path):
        raise CLIError(f"--synthetic={path}: no such file (a synthetic.pt or set.pt written by a run).")
    try:
        read_set(path)
    except NotASet as error:
        message = str(error)
        if "not a recbole_foster set" not in message:
            message = f"{path} is not a recbole_foster set: {message}"
        if "cannot be read as plain tensors" in message:
            message = f"{path} is not a recbole_foster set: {_why_unreadable(path)}"
        raise CLIError(f"--synthetic: {message}") from None


def _why_unreadable(path):
    """Why the safe readers (``torch.load(weights_only=True)``, safetensors) refused a file, without
    loading it any other way."""
    import pickle
    import zipfile

    import torch

    from recbole_foster.distill.artifacts import is_torch_archive

    if not is_torch_archive(path):
        return "it is neither a torch.save archive nor a safetensors file (or it is truncated)."
    if not zipfile.is_zipfile(path):
        return "it begins as a torch.save archive but has no end (it is truncated)."
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return ("it holds Python objects besides tensors and plain values, which are never loaded "
                "(a recbole_foster set holds only those).")
    except Exception as error:  # noqa: BLE001 - any other failure of the safe loader: a damaged archive
        return f"it is a damaged torch file ({type(error).__name__})."
    return "it cannot be read as plain tensors."


def check_model_for_method(config, method):
    """``--model`` is one the method can train or build a set with (``Method.models``)."""
    from recbole_foster.model import students

    name = config["model"]
    if method.models == "any":
        return
    if method.models == "TextSASRec":
        ok = name == "TextSASRec"
    else:
        try:
            ok = students.is_causal(config.model_class) or method.models == "student"
        except students.UnsupportedModel:
            ok = False
    if not ok:
        raise CLIError(f"--method={method.name} needs {MODEL_SUPPORT[method.models]}; got --model={name}. "
                       "Build the set with TextSASRec and train other models on it with "
                       "--method=eval --synthetic=PATH --model=NAME.")


def check_combinations(config, options, method):
    """Options that apply only to some methods, then the method's own checks."""
    name = method.name
    if config["synthetic"] and not method.reads_synthetic:
        raise CLIError(f"--synthetic is read only by --method=eval (this run is --method={name}); "
                       "add --method=eval or drop --synthetic.")
    if config["resume"] is True and not method.resumable:
        raise CLIError(f"--resume continues an interrupted distillation (--method=foster or td3); "
                       f"--method={name} has nothing to resume.")
    if config["export_atomic"] and not method.exports:
        raise CLIError(f"--export_atomic writes a small set as atomic files; --method={name} builds none.")
    encoder = str(config["text_encoder"] or "")
    if method.reads_item_text(config) and encoder.startswith(("/", "./", "../", "~")) \
            and not os.path.isdir(os.path.expanduser(encoder)):
        raise CLIError(f"--text_encoder={encoder}: no such folder (a local HuggingFace model folder, or a hub id).")
    method.check(config)


def validate_run(config, options, method, plugin_keys=()):
    """Check every input (see the module docstring) for a run of ``method``; returns notes for results.json.

    May set ``config["load_col"]`` (from the atomic files' headers) and ``config["data_path"]``
    (a cleaned copy, with ``--skip_malformed=True``).
    """
    from recbole_foster.dataset.atomic_files import prepare_atomic_files

    check_model_for_method(config, method)  # first: with another model, the other options may not apply either
    check_known_keys(config, options, plugin_keys)
    check_values(config, options)
    check_combinations(config, options, method)
    return prepare_atomic_files(config, needs_item_text=method.reads_item_text(config))


# ----- the output folder -----
_CREATED = []


def make_output_dir(path):
    """``os.makedirs(path)``, remembering the folders it created for :func:`remove_empty_output_dirs`."""
    missing, folder = [], os.path.abspath(path)
    while folder and not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    os.makedirs(path, exist_ok=True)
    _CREATED.extend(missing)  # deepest first


def remove_empty_output_dirs():
    """Remove the folders :func:`make_output_dir` created that are still empty (a failed run)."""
    while _CREATED:
        folder = _CREATED.pop(0)
        try:
            os.rmdir(folder)  # only if empty
        except OSError:
            _CREATED.clear()  # not empty (or gone): its parents are not empty either


def empty_item_texts(config, dataset, reads_item_text):
    """Items without text (warned about; None for a run that reads no item text)."""
    if not reads_item_text:
        return None
    from recbole_foster.dataset.checks import count_empty_item_texts

    return count_empty_item_texts(config, dataset)
