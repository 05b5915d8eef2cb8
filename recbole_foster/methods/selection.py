"""Small sets of real users: Random-N, Random-KD-N (teacher's soft labels) and the coresets.

Every set is saved (``set.pt``, real windows plus any stored labels) and judged by
:func:`~recbole_foster.evaluation.evaluate_training_set`, like a distilled one. Teacher labels
are kept as ``label_storage`` says (:mod:`recbole_foster.labels`): not at all (the teacher labels
the set: teacher-assisted), or dense / top-k / text codes inside the file (self-contained).
"""

import os

import torch

from recbole_foster.distill.artifacts import save_windows
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.labels import get_storage, label_kl
from recbole_foster.methods.base import Method
from recbole_foster.methods.set_files import common_header, describe_set, export_set
from recbole_foster.training_sets import HardSequences, TeacherLabelledSequences

PROPERTIES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties", "overall")


def _user_tokens(ctx, users):
    token = ctx.dataset.field2id_token[ctx.dataset.uid_field]
    return [token[u] for u in users.tolist()]


def save_and_judge(ctx, label, sequences, users, training_set, stored=None, storage=None, stored_kl=None):
    """Save the windows (and stored labels), judge them, and say what the set is."""
    storage = storage or get_storage("hard")
    user_tokens = _user_tokens(ctx, users)
    header = {**common_header(ctx), "method": ctx.config["method"], "label_storage": storage.name}
    path = save_windows(os.path.join(ctx.output_dir, "set.pt"), sequences, header, stored)
    result = evaluate_training_set(ctx, training_set, desc=label)
    labels = None
    if stored:  # stored labels index t labels position t + 1: realign them to the windows' positions
        labels = {**stored, "label_mask": torch.cat([torch.zeros_like(stored["label_mask"][:, :1]),
                                                     stored["label_mask"]], dim=1)}
    exported = export_set(ctx, items=sequences, user_tokens=user_tokens, labels=labels,
                          teacher_assisted=storage.needs_teacher)
    return {**result, **describe_set(ctx, path, needs_teacher=storage.needs_teacher), **exported,
            "label_storage": storage.name, "stored_label_kl": stored_kl, "selected_users": user_tokens,
            "table": {"Full": ctx.real_run.manifest["test"], label: result["test"]}}


def teacher_labelled(ctx, sequences, storage=None):
    """``(training set, stored label tensors, storage, KL)``: the teacher's labels for ``sequences``,
    as ``storage`` (default: the configured ``label_storage``) keeps them (a lossy storage's labels
    are trained on as stored). KL = mean KL(teacher's label || stored label) per labelled position: how
    much of the teacher's distribution the storage loses (0 when nothing is lost; None when nothing is stored)."""
    storage = get_storage(storage or ctx.config["label_storage"])
    item_text = getattr(ctx.dataset, "item_text_embeddings", None)
    with ctx.timed("labels"):  # the teacher's labels, and the fit of text codes (or a label model) to them
        labelled = TeacherLabelledSequences.from_teacher(sequences, ctx.teacher)
        options = {"sequences": sequences, **storage.run_options(ctx.config)}
        if storage.needs_windows and ctx.config["label_model_fit_windows"]:
            options.update(fit_windows(ctx, int(ctx.config["label_model_fit_windows"])))
        stored = storage.compress(labelled.target_log_probs, labelled.label_mask, ctx.config["label_topk"],
                                  item_text, device=ctx.config["device"], **options)
    if not storage.lossy:
        return labelled, stored, storage, 0.0 if stored else None
    _, log_probs = storage.expand(stored, labelled.target_log_probs.size(-1), item_text,
                                  sequences=sequences)  # train on what is kept
    kept = TeacherLabelledSequences(sequences, log_probs)
    kl = label_kl(labelled.target_log_probs, log_probs, labelled.label_mask)
    ctx.logger.info(f"Labels stored as {storage.name}: mean KL(teacher || stored) {kl:.3f} nats per position")
    return kept, stored, storage, kl


def fit_windows(ctx, n):
    """More teacher-labelled training windows a label model is fitted on (not stored): a seeded
    draw of ``n`` training users' windows (all of them when there are fewer)."""
    users, sequences = ctx.candidates
    generator = torch.Generator().manual_seed(ctx.selection_seed + 1)  # not the set's own draw
    chosen = torch.randperm(len(users), generator=generator)[:n]
    fit = TeacherLabelledSequences.from_teacher(sequences[chosen], ctx.teacher)
    return {"fit_sequences": fit.item_seqs, "fit_log_probs": fit.target_log_probs}


class TeacherLabelled(Method):
    """A set of windows trained on the teacher's labels, kept as ``label_storage`` says."""

    def label_storage(self, config):
        return get_storage(config["label_storage"])

    def describe_row(self, config, n):
        try:
            storage = self.label_storage(config)
        except (KeyError, ValueError):  # a config without (a known) label_storage: say what the rows are
            return super().describe_row(config, n)
        kept = ("the teacher labels them while a model trains (teacher-assisted)" if storage.needs_teacher
                else f"labels stored in the set as {storage.name} (self-contained)")
        return f"{super().describe_row(config, n)}; {kept}"


class Random(Method):
    name, label = "random", "Random"
    summary = "n_sequences random real user windows, next-item labels"

    def run(self, ctx):
        """N real training users chosen uniformly at random (the run's Random-N draw)."""
        users, sequences = ctx.random_draw
        return save_and_judge(ctx, self.row_label(len(users)), sequences, users, HardSequences(sequences))


class RandomKD(TeacherLabelled):
    name, label = "random_kd", "Random-KD"
    summary = "the same windows trained on the teacher's soft next-item labels"

    def run(self, ctx):
        """The Random-N users trained on the real-data model's soft next-item distributions."""
        users, sequences = ctx.random_draw
        return save_and_judge(ctx, self.row_label(len(users)), sequences, users, *teacher_labelled(ctx, sequences))


class Coreset(TeacherLabelled):
    """N real users chosen by a coreset algorithm (:mod:`recbole_foster.coreset`), judged like
    Random-N (``coreset_labels: teacher``: with the teacher's labels, judged like Random-KD-N)."""

    models = "causal"
    config_file = os.path.join(PROPERTIES, "coreset.yaml")
    selector = None  # the name of its algorithm in recbole_foster.coreset.selectors
    label_prefix = None  # the row label of its windows

    def teacher_labels(self, config):
        return config["coreset_labels"] == "teacher"

    def label_storage(self, config):
        return super().label_storage(config) if self.teacher_labels(config) else get_storage("hard")

    def run(self, ctx):
        from recbole_foster.coreset.selectors import select

        n = ctx.n_sequences
        users, sequences = ctx.candidates
        with ctx.timed("select"):
            chosen = select(ctx, self.selector, ctx.teacher, sequences, n)
        users, sequences = users[chosen], sequences[chosen]
        if self.teacher_labels(ctx.config):
            label = f"{self.label_prefix}-KD-{n}"
            return save_and_judge(ctx, label, sequences, users, *teacher_labelled(ctx, sequences))
        return save_and_judge(ctx, f"{self.label_prefix}-{n}", sequences, users, HardSequences(sequences))


class KCenter(Coreset):
    name, label, selector, label_prefix = "kcenter", "K-Center", "kcenter", "K-Center"
    summary = "coreset: greedy k-center on the teacher's user states"


class DEALRec(Coreset):
    name, label, selector, label_prefix = "dealrec", "DEALRec", "dealrec", "DEALRec"
    summary = "coreset: DEALRec influence + effort score strata"


class GORACS(Coreset):
    name, label, selector, label_prefix = "goracs", "GORACS", "goracs", "GORACS"
    summary = "coreset: GORACS optimal-transport match to validation"


class KCenterKD(KCenter):
    """The windows that cover the teacher's user states (greedy k-center on its last hidden state),
    with the teacher's labels kept as ``label_storage`` says."""

    name, label = "kcenter_kd", "K-Center-KD"
    summary = "K-Center's windows (coverage of the teacher's user states) with the teacher's labels (label_storage)"

    def teacher_labels(self, config):
        return True
