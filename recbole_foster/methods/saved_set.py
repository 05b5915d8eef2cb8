"""``--method=eval --synthetic=PATH``: train on a saved set under the run's protocol.

A saved set is a distilled summary (``synthetic.pt``), real windows (``set.pt``) or a folder
of RecBole atomic files written by ``--export_atomic`` (``<name>/<name>.inter``, plus the
soft-labels sidecar when the set had self-contained labels). A self-contained set trains with
nothing but the file(s) and the dataset; only a teacher-assisted set (``label_storage: teacher``)
loads the teacher, and only the teacher that labelled it.
"""

import functools
import os

from recbole_foster.cli import CLIError
from recbole_foster.distill.artifacts import (
    FORMAT, NotASet, atomic_inter_file, check_catalog, label_storage_of, load_atomic_set, load_synthetic, read_set,
    read_atomic_sequences, read_soft_labels, soft_labels_file, stored_labels_of,
)
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.labels import get_storage
from recbole_foster.methods.base import Method
from recbole_foster.methods.distillation import export_soft_set
from recbole_foster.methods.set_files import describe_set
from recbole_foster.real_run import ensure_real_run, find_real_run, pool_dir


class SavedSet:
    """A loaded set: what it is and whether training on it needs the teacher."""

    def __init__(self, path, header, payload, summary=None, mode=None, files=None):
        self.path, self.header, self.payload = path, header, payload
        self.summary, self.mode = summary, mode
        self.files = files  # what the set is made of when ``path`` is a folder (see describe_set)
        name = header.get("label_storage") or ("summary" if summary is not None else "hard")
        self.storage = label_storage_of({"label_storage": name})
        self.stored = stored_labels_of(payload)
        self.needs_teacher = self.storage.needs_teacher or (mode is not None and mode.needs_teacher and not self.stored)

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
    item_text = getattr(ctx.dataset, "item_text_embeddings", None)
    if saved.summary is not None:
        return saved.mode.training_set(saved.summary, teacher, ctx.config["device"], saved.stored or None, item_text)
    sequences = saved.payload["item_seqs"].long()
    try:
        return saved.storage.training_set(sequences, saved.stored, teacher, ctx.dataset.item_num, item_text), None
    except ValueError as error:
        raise ValueError(f"{saved.path} {error}") from None


@functools.lru_cache(maxsize=8)
def _set_references_text(path, mtime):
    """Whether the set (file, or exported folder) is decoded with the dataset's text embeddings
    (read once per file version: several start-up stages ask)."""
    try:
        if os.path.isdir(path):
            sidecar = soft_labels_file(path)
            if not os.path.isfile(sidecar):
                return False
            return get_storage(read_soft_labels(sidecar)[0].get("storage")).needs_item_text
        header, payload = read_set(path)
    except (NotASet, OSError, ValueError):
        return False
    storage = label_storage_of({"label_storage": header.get("label_storage") or "hard"})
    return storage.needs_item_text or (header.get("format") == FORMAT and "item_factor" not in payload)


class Eval(Method):
    name, label = "eval", "Saved set"
    summary = "train on a saved set (--synthetic=PATH) and report"
    small_set, models, reads_synthetic = False, "student", True

    def output_name(self, config):
        """``eval-<set name>``: the set file's folder (``.../random_kd-20/seed2020/set.pt`` ->
        ``random_kd-20-seed2020-set``) or the exported folder's name, so two evals never share a folder."""
        path = os.path.normpath(os.path.abspath(str(config["synthetic"])))
        if os.path.isdir(path):
            return f"eval-{os.path.basename(path)}"
        parts = path.split(os.sep)
        stem = os.path.splitext(parts[-1])[0]
        return "eval-" + "-".join([p for p in parts[-3:-1] if p] + [stem])

    def needs_teacher(self, config):
        return config["distilled_student_init"] == "teacher_embeddings"  # the set's own need: SavedSet

    def reads_item_text(self, config):
        if super().reads_item_text(config) or not config["synthetic"]:
            return bool(super().reads_item_text(config))
        path = str(config["synthetic"])
        try:
            return _set_references_text(path, os.path.getmtime(path))
        except OSError:
            return False  # reported by check()

    def check(self, config):
        from recbole_foster.validation import check_saved_set_file

        if not config["synthetic"]:
            raise CLIError("--method=eval needs --synthetic=PATH (a synthetic.pt or set.pt written by a run, "
                           "or a folder written by --export_atomic).")
        check_saved_set_file(str(config["synthetic"]))

    def check_data(self, ctx):
        """The set's items are the loaded dataset's (before the text embedding and any training)."""
        path = str(ctx.config["synthetic"])
        try:
            if os.path.isdir(path):
                _, sequences = read_atomic_sequences(atomic_inter_file(path))
                known = ctx.dataset.field2token_id[ctx.dataset.iid_field]
                unknown = sorted({t for seq in sequences for t in seq if known.get(t, 0) <= 0})
                if unknown:
                    raise ValueError(f"{atomic_inter_file(path)} has {len(unknown)} item tokens (e.g. {unknown[0]!r}) "
                                     f"that the loaded dataset '{ctx.dataset.dataset_name}' does not know; evaluate "
                                     "it with the --dataset (and filtering config) it was exported from.")
                return
            header, _ = read_set(path)
            header = {k: v for k, v in header.items() if k != "text_embedding_key"}  # checked after embedding
            check_catalog(path, header, ctx.dataset)
        except NotASet as error:
            raise CLIError(f"--synthetic: {error}") from None
        except ValueError as error:
            raise CLIError(str(error)) from None

    def prepare_inputs(self, ctx):
        """The saved set, checked before any real-data training; the real-data run only when the set
        needs its teacher (a self-contained set shows Full beside it if that run exists)."""
        saved = check_saved_set(ctx)
        paper_compatible = ctx.config["distilled_student_init"] == "teacher_embeddings"
        if not saved.needs_teacher and not paper_compatible:
            return {"real_run": find_real_run(ctx), "teacher": None, "saved_set": saved}
        real_run = ensure_real_run(ctx)
        teacher = real_run.load_teacher(lambda: ctx.new_model(ctx.config["seed"]))
        return {"real_run": real_run, "teacher": teacher, "saved_set": saved}

    def banner_lines(self, ctx):
        return "Saved set", [f"training on {ctx.config['synthetic']} (a set file is read as plain tensors; an "
                             "exported folder through its atomic files), judged like any small set."]

    def evaluated_sets(self, config, n):
        return ["the saved set"]

    def describe_row(self, config, n):
        return f"the saved set {config['synthetic']}"

    def run(self, ctx):
        """Re-evaluate a saved set (checked by :func:`check_saved_set` before the real-data run)."""
        saved = ctx.saved_set
        n = saved.n_sequences
        training_set, probs = training_set_of(ctx, saved)
        result = evaluate_training_set(ctx, training_set, desc=f"eval {os.path.basename(saved.path)}")
        described = describe_set(ctx, saved.path, saved.needs_teacher, saved.files) \
            if ctx.real_run or not saved.needs_teacher else {}
        return {**result, "n_sequences": n, "synthetic": saved.path,
                "label_mode": saved.mode.name if saved.mode else None,
                "label_storage": saved.storage.name, **described,
                "synthetic_header": {k: v for k, v in saved.header.items() if k != "item_tokens"},
                **(export_soft_set(ctx, training_set, probs, saved.stored, saved.needs_teacher)
                   if probs is not None else {"exported_atomic": None}),
                "table": {**({"Full": ctx.real_run.manifest["test"]} if ctx.real_run else {}),
                          f"saved-{n}": result["test"]}}
