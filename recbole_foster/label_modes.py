"""How the soft sequences of a synthetic summary get their labels (config key ``foster_targets``).

TD3 and FOSTER store one tensor that is both a position's input and the previous position's
label (``coupled``). The other three modes are this project's (docs/experiments.md says why):

* ``separate``: the labels have their own Tucker core, fitted to the teacher's next-item
  predictions at the warm start and distilled with the inputs;
* ``fixed``: as ``separate``, but the fitted labels are frozen and only the inputs move;
* ``teacher``: no label parameters; every label is the teacher's prediction on the current
  inputs, recomputed at every step and again when a saved set is trained on (so such a set
  needs the teacher at training time).

A :class:`LabelMode` answers every question the trainers, the saved-set format and evaluation
would otherwise branch on, and its ``name`` is written into a saved set's header.
"""

import torch

from recbole_foster.labels import expand, get_storage
from recbole_foster.training_sets import SoftSequences, teacher_soft_labels

CONFIG_KEY = "foster_targets"


class LabelMode:
    name = None
    separate_targets = False  # the summary owns a target core besides the input core
    needs_teacher = False  # training on a saved set needs the teacher that distilled it
    needs_real_init = False  # only meaningful from the real warm start (foster_init: real)

    def soft_batch(self, summary, items, teacher):
        """(input log-probs, target log-probs or None = the inputs are the targets) over ``items``."""
        return summary.soft_batch(items)

    def init_targets(self, summary, teacher, sequences, steps, generator):
        """Fit the labels after the inputs were fitted to real ``sequences``; returns the fit's KL or None."""
        return None

    def full_targets(self, summary, log_probs, teacher):
        """(m, n, n_items) label log-probs over the catalog for evaluation; None = the inputs."""
        return None

    def training_set(self, summary, teacher, device, stored=None, item_text=None):
        """``(SoftSequences over the whole catalog, input probabilities on CPU)`` of a summary;
        with ``stored`` labels (:mod:`recbole_foster.labels`; text codes are decoded with
        ``item_text``) those replace the mode's own."""
        log_probs = summary.full_log_probabilities().to(device)
        if stored:
            targets = expand(stored, log_probs.size(-1), item_text)[1]
        else:
            with torch.no_grad():
                targets = self.full_targets(summary, log_probs, teacher)
        log_probs = log_probs.cpu()
        return SoftSequences(log_probs, None if targets is None else targets.cpu()), log_probs.exp()

    def stored_labels(self, summary, teacher, device, storage, k, item_text=None):
        """The labels of every position after the first, kept as ``storage`` says (a summary whose
        labels come from the teacher can carry them and leave the teacher behind)."""
        log_probs = summary.full_log_probabilities().to(device)
        with torch.no_grad():
            targets = self.full_targets(summary, log_probs, teacher)
        if targets is None:
            targets = log_probs
        mask = torch.ones(targets.shape[:2], dtype=torch.bool)
        mask[:, 0] = False  # position 0 is never a target
        return get_storage(storage).compress(targets.cpu(), mask, k, item_text, device=device)


class Coupled(LabelMode):
    name = "coupled"


class Separate(LabelMode):
    name = "separate"
    separate_targets = True

    def init_targets(self, summary, teacher, sequences, steps, generator):
        labelled = sequences > 0
        labelled[:, 0] = False  # the first item has no history, hence no teacher label
        return summary.fit_targets(teacher_next_item_log_probs(teacher, sequences), labelled,
                                   steps=steps, generator=generator)

    def full_targets(self, summary, log_probs, teacher):
        return summary.full_target_log_probabilities()


class Fixed(Separate):
    name = "fixed"
    needs_real_init = True

    def init_targets(self, summary, teacher, sequences, steps, generator):
        kl = super().init_targets(summary, teacher, sequences, steps, generator)
        summary.freeze_targets()
        return kl


class Teacher(LabelMode):
    name = "teacher"
    needs_teacher = True

    def soft_batch(self, summary, items, teacher):
        inputs, _ = summary.soft_batch(items)
        return inputs, teacher_soft_labels(teacher, inputs, items)

    def full_targets(self, summary, log_probs, teacher):
        items = torch.arange(1, log_probs.size(-1), device=log_probs.device)
        labels = teacher_soft_labels(teacher.eval(), log_probs[..., 1:], items)
        return torch.cat([torch.full_like(labels[..., :1], float("-inf")), labels], dim=-1)


MODES = {mode.name: mode for mode in (Coupled(), Separate(), Fixed(), Teacher())}


def label_mode_of(config):
    """The configured mode; a clear error for an unknown name."""
    name = config[CONFIG_KEY]
    if name not in MODES:
        raise ValueError(f"{CONFIG_KEY} must be one of {tuple(MODES)}, got {name!r}.")
    mode = MODES[name]
    if mode.needs_real_init and config["foster_init"] != "real":
        raise ValueError(f"{CONFIG_KEY}: {name} keeps the teacher's labels of the warm start; it needs "
                         f"foster_init: real (got {config['foster_init']}).")
    return mode


def label_mode_from_header(header):
    """The mode a saved set was distilled with (its header names it)."""
    name = header.get("label_mode")
    if name not in MODES:
        raise ValueError(f"unknown label mode {name!r} in a saved set's header; expected one of {tuple(MODES)}.")
    return MODES[name]


def teacher_next_item_log_probs(teacher, item_seqs):
    """``f(item_ids)``: the teacher's (m, n, K) label log-distributions for the items at positions
    1..n-1 of ``item_seqs`` (position 0 has no label: zeros, masked out by the caller)."""
    with torch.no_grad():
        teacher.eval()
        hidden = teacher.encode(item_seqs[:, :-1])

    def label_log_probs(item_ids):
        scores = teacher.scores(hidden, item_ids)
        log_probs = torch.log_softmax(scores, dim=-1)
        return torch.cat([torch.zeros_like(log_probs[:, :1]), log_probs], dim=1)

    return label_log_probs
