"""Small sets of real users: Random-N, Random-KD-N (teacher's soft labels) and the coresets.

Every set is saved (``set.pt``, real windows plus any stored labels) and judged by
:func:`~recbole_foster.evaluation.evaluate_training_set`, like a distilled one. Random-KD's labels
are kept as ``label_storage`` says: not at all (the teacher labels the set: teacher-assisted), or
dense / top-k inside the file (self-contained).
"""

import os

import torch

from recbole_foster.distill.artifacts import save_windows
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.methods import METHODS
from recbole_foster.methods.set_files import common_header, describe_set, export_set
from recbole_foster.stored_labels import compress, expand, label_kl
from recbole_foster.training_sets import HardSequences, TeacherLabelledSequences


def _user_tokens(ctx, users):
    token = ctx.dataset.field2id_token[ctx.dataset.uid_field]
    return [token[u] for u in users.tolist()]


def save_and_judge(ctx, label, sequences, users, training_set, stored=None, storage=None, stored_kl=None):
    """Save the windows (and stored labels), judge them, and say what the set is."""
    header = {**common_header(ctx), "method": ctx.config["method"], "selected_users": _user_tokens(ctx, users),
              "label_storage": storage}
    path = save_windows(os.path.join(ctx.output_dir, "set.pt"), sequences, header, stored)
    result = evaluate_training_set(ctx, training_set, desc=label)
    labels = None
    if stored:  # stored labels index t labels position t + 1: realign them to the windows' positions
        labels = {**stored, "label_mask": torch.cat([torch.zeros_like(stored["label_mask"][:, :1]),
                                                     stored["label_mask"]], dim=1)}
    exported = export_set(ctx, items=sequences, user_tokens=header["selected_users"], labels=labels,
                          teacher_assisted=storage == "teacher")
    return {**result, **describe_set(ctx, path, needs_teacher=storage == "teacher"), **exported,
            "label_storage": storage, "stored_label_kl": stored_kl, "selected_users": header["selected_users"],
            "table": {"Full": ctx.real_run.manifest["test"], label: result["test"]}}


def teacher_labelled(ctx, sequences):
    """``(training set, stored label tensors, storage, KL)``: the teacher's labels for ``sequences``,
    as the configured ``label_storage`` keeps them (top-k and text-code labels are trained on as
    stored). KL = mean KL(teacher's label || stored label) per labelled position: how much of the
    teacher's distribution the storage loses (0 for dense; None when nothing is stored)."""
    storage = ctx.config["label_storage"]
    item_text = getattr(ctx.dataset, "item_text_embeddings", None)
    with ctx.timed("labels"):  # the teacher's labels, and the fit of text codes to them
        labelled = TeacherLabelledSequences.from_teacher(sequences, ctx.teacher)
        stored = compress(labelled.target_log_probs, labelled.label_mask, storage, ctx.config["label_topk"],
                          item_text)
    if storage not in ("topk", "text_code"):
        return labelled, stored, storage, 0.0 if stored else None
    _, log_probs = expand(stored, labelled.target_log_probs.size(-1), item_text)  # lossy: train on what is kept
    kept = TeacherLabelledSequences(sequences, log_probs)
    kl = label_kl(labelled.target_log_probs, log_probs, labelled.label_mask)
    ctx.logger.info(f"Labels stored as {storage}: mean KL(teacher || stored) {kl:.3f} nats per position")
    return kept, stored, storage, kl


def run_random(ctx):
    """N real training users chosen uniformly at random (the run's Random-N draw)."""
    users, sequences = ctx.random_draw
    label = METHODS["random"].row_label(len(users))
    return save_and_judge(ctx, label, sequences, users, HardSequences(sequences), storage="hard")


def run_random_kd(ctx):
    """The Random-N users trained on the real-data model's soft next-item distributions."""
    users, sequences = ctx.random_draw
    label = METHODS["random_kd"].row_label(len(users))
    return save_and_judge(ctx, label, sequences, users, *teacher_labelled(ctx, sequences))


def run_coreset(ctx):
    """``--method=kcenter|dealrec|goracs``: N real users chosen by a coreset algorithm, judged like
    Random-N (``coreset_labels: teacher``: with the teacher's labels, judged like Random-KD-N)."""
    return _coreset(ctx, ctx.config["method"], teacher_labels=ctx.config["coreset_labels"] == "teacher")


def run_kcenter_kd(ctx):
    """``--method=kcenter_kd``: the windows that cover the teacher's user states (greedy k-center
    on its last hidden state), with the teacher's labels kept as ``label_storage`` says."""
    return _coreset(ctx, "kcenter", teacher_labels=True)


def _coreset(ctx, selector, teacher_labels):
    from recbole_foster.coreset.selectors import select

    n = ctx.n_sequences
    users, sequences = ctx.candidates
    with ctx.timed("select"):
        chosen = select(ctx, selector, ctx.teacher, sequences, n)
    users, sequences = users[chosen], sequences[chosen]
    if teacher_labels:
        label = f"{METHODS[selector].label}-KD-{n}"
        return save_and_judge(ctx, label, sequences, users, *teacher_labelled(ctx, sequences))
    label = METHODS[selector].row_label(n)
    return save_and_judge(ctx, label, sequences, users, HardSequences(sequences), storage="hard")
