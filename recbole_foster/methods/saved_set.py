"""``--method=eval --synthetic=PATH``: train on a saved set under the run's protocol.

A saved set is a distilled summary (``synthetic.pt``), real windows (``set.pt``) or a folder
of RecBole atomic files written by ``--export_atomic`` (``<name>/<name>.inter``, plus the
soft-labels sidecar when the set had self-contained labels). A self-contained set trains with
nothing but the file(s) and the dataset; only a teacher-assisted set (``label_storage: teacher``)
loads the teacher, and only the teacher that labelled it.
"""

import os

from recbole_foster.cli import CLIError
from recbole_foster.distill.artifacts import (
    FORMAT, NotASet, check_catalog, label_storage_of, load_atomic_set, load_synthetic, read_set, stored_labels_of,
)
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.methods.distillation import export_soft_set
from recbole_foster.methods.set_files import describe_set
from recbole_foster.real_run import pool_dir
from recbole_foster.stored_labels import expand
from recbole_foster.training_sets import HardSequences, TeacherLabelledSequences


class SavedSet:
    """A loaded set: what it is and whether training on it needs the teacher."""

    def __init__(self, path, header, payload, summary=None, mode=None, files=None):
        self.path, self.header, self.payload = path, header, payload
        self.summary, self.mode = summary, mode
        self.files = files  # what the set is made of when ``path`` is a folder (see describe_set)
        self.storage = header.get("label_storage") or ("summary" if summary is not None else "hard")
        if self.storage not in ("summary", "hard"):
            label_storage_of(header)
        self.stored = stored_labels_of(payload)
        self.needs_teacher = self.storage == "teacher" or (mode is not None and mode.needs_teacher and not self.stored)

    @property
    def n_sequences(self):
        return self.header["n_sequences"]


def check_saved_set(ctx):
    """Before any real-data training: the set matches the data, and a teacher-assisted set is
    evaluated with the config whose teacher labelled it."""
    path = ctx.config["synthetic"]
    if not path:
        raise CLIError("--method=eval needs --synthetic=PATH (a synthetic.pt or set.pt written by a run, or a folder written by --export_atomic).")
    if os.path.isdir(path):
        return check_atomic_set(ctx, path)
    header, payload = read_set(path)
    try:
        if header["format"] == FORMAT:
            summary, mode, header = load_synthetic(path, ctx.dataset)
            saved = SavedSet(path, header, payload, summary, mode)
        else:
            check_catalog(path, header, ctx.dataset)
            saved = SavedSet(path, header, payload)
    except NotASet:
        raise
    except ValueError as error:  # built on another catalog or text embedding: say what to change
        raise CLIError(str(error)) from None
    expected_run = os.path.basename(pool_dir(ctx.config, ctx.text_encoder))
    built_with = header.get("model") or str(header.get("teacher_run", "")).split("-seed")[0]
    if saved.needs_teacher and built_with != ctx.config["model"]:
        raise CLIError(
            f"{path} is teacher-assisted: its labels come from the {built_with} teacher while a model "
            f"trains on it, so it cannot train --model={ctx.config['model']}. Train {built_with} on it, or "
            "rebuild it with --label_storage=topk (or dense) so that the set carries its labels and "
            "any model can train on it.")
    if saved.needs_teacher and header.get("teacher_run") != expected_run:
        raise CLIError(
            f"{path} is labelled by the teacher of real-data run {header.get('teacher_run')!r}, but this "
            f"config's real-data run is {expected_run!r}; evaluate it with the seed and config it was "
            "distilled with, so that the same teacher labels it.")
    return saved


def check_atomic_set(ctx, folder):
    """An exported atomic folder (``--export_atomic``) read back in the loaded dataset's item ids.

    It is self-contained whatever set it was exported from: the ``.inter`` holds the sequences and
    the sidecar, if any, their soft labels (trained on like a ``set.pt``'s stored labels).
    """
    try:
        item_seqs, stored, header = load_atomic_set(folder, ctx.dataset, ctx.config["MAX_ITEM_LIST_LENGTH"])
    except ValueError as error:  # unknown item tokens, another catalog, labels of other rows
        raise CLIError(str(error)) from None
    files = [header["inter_file"]] + ([header["soft_labels_file"]] if header["soft_labels_file"] else [])
    return SavedSet(os.path.normpath(folder), header, {"item_seqs": item_seqs, **stored}, files=files)


def training_set_of(ctx, saved):
    """``(training set, input probabilities or None)`` of a loaded set."""
    teacher = ctx.teacher if saved.needs_teacher else None
    if saved.summary is not None:
        return saved.mode.training_set(saved.summary, teacher, ctx.config["device"], saved.stored or None,
                                       getattr(ctx.dataset, "item_text_embeddings", None))
    sequences = saved.payload["item_seqs"].long()
    if saved.storage == "hard":
        return HardSequences(sequences), None
    if saved.storage == "teacher":
        return TeacherLabelledSequences.from_teacher(sequences, teacher), None
    mask, log_probs = expand(saved.stored, ctx.dataset.item_num, getattr(ctx.dataset, "item_text_embeddings", None))
    labelled = TeacherLabelledSequences(sequences, log_probs)
    if not bool((labelled.label_mask == mask).all()):
        raise ValueError(f"{saved.path} is damaged: its stored labels do not match its windows.")
    return labelled, None


def run_eval(ctx):
    """Re-evaluate a saved set (checked by :func:`check_saved_set` before the real-data run)."""
    saved = ctx.saved_set
    ctx.config["n_sequences"] = n = saved.n_sequences
    training_set, probs = training_set_of(ctx, saved)
    result = evaluate_training_set(ctx, training_set, desc=f"eval {os.path.basename(saved.path)}")
    described = describe_set(ctx, saved.path, saved.needs_teacher, saved.files) \
        if ctx.real_run or not saved.needs_teacher else {}
    return {**result, "synthetic": saved.path, "label_mode": saved.mode.name if saved.mode else None,
            "label_storage": saved.storage, **described,
            "synthetic_header": {k: v for k, v in saved.header.items() if k != "item_tokens"},
            **(export_soft_set(ctx, training_set, probs, saved.stored, saved.needs_teacher) if probs is not None
               else {"exported_atomic": None}),
            "table": {**({"Full": ctx.real_run.manifest["test"]} if ctx.real_run else {}), f"saved-{n}": result["test"]}}

