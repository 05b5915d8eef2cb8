"""The interface of a label storage: how a saved small set keeps the soft labels it trains on.

Labels are (m, n, n_items) log-distributions whose column 0 (padding) is -inf; ``mask`` (m, n)
marks the positions that have a label, and only those are stored. A storage turns them into a
dict of tensors (:meth:`LabelStorage.compress`, always with ``label_mask`` unless nothing is
stored), the tensors a set file (``set.pt`` / ``synthetic.pt``) holds under keys that start with
``label_``; :meth:`LabelStorage.expand` rebuilds the distributions from them. The export sidecar
(``<name>.soft_labels.pt``, :mod:`recbole_foster.distill.artifacts`) holds the same labels keyed by
item tokens: :meth:`LabelStorage.to_sidecar` / :meth:`LabelStorage.from_sidecar`.

A storage that labels windows from their item ids (``needs_windows``, e.g. a small model over
the item texts) is handed the windows: ``compress(..., sequences=)`` and ``expand(...,
sequences=)`` (m, L) item ids, where label t is read from the prefix up to t; callers of sets of
real windows (``methods/selection.py::teacher_labelled``, :meth:`LabelStorage.training_set`)
pass them, other storages ignore them.

A new storage is one subclass registered with :func:`recbole_foster.labels.register_storage`
(``--label_storage=<name>`` then selects it).
"""

import math

import torch


def window_label_mask(windows):
    """(m, L - 1): the positions of real windows (m, L; 0 = padding) that carry a label: a real
    item follows a real item. Sets of real windows never store it (it is implied)."""
    return (windows[:, 1:] > 0) & (windows[:, :-1] > 0)


class LabelStorage:
    """One way of keeping labels. Subclasses set the attributes and implement the methods."""

    name = None
    needs_teacher = False  # nothing is stored: the teacher labels the set while a model trains (teacher-assisted)
    needs_item_text = False  # the labels are read with the dataset's item text embeddings
    lossy = False  # what is kept differs from the teacher's labels: a set trains on what is kept
    selectable = True  # a value of --label_storage (False: a kind of set, e.g. hard next-item labels)
    memory = False  # can keep the labels of a DIET memory (--diet_label_storage)
    refinable = False  # per-position top-k probabilities a DIET memory may refine by gradient (diet_refine_steps)
    needs_windows = False  # labels are computed from the windows' item ids (sets of real windows only)
    fixed_size = False  # fitted to one memory size (a DIET memory of this storage cannot grow: diet_memory_share)
    summary = ""  # one line for the docs and the table legend
    shared_key = None  # a tensor shared by every label of one writer (not per position), e.g. a decoder

    # ----- the labels -----
    def compress(self, log_probs, mask, k=None, item_text=None, **options):
        """The tensors that keep ``log_probs[mask]`` (``label_mask`` and ``label_*`` tensors)."""
        raise NotImplementedError

    def expand(self, stored, n_items, item_text=None, sequences=None):
        """``(mask, (m, n, n_items) log-probs)`` rebuilt from :meth:`compress`'s tensors
        (``sequences``: the windows, read only by a storage that ``needs_windows``)."""
        mask = stored["label_mask"]
        full = torch.full(tuple(mask.shape) + (n_items,), -math.inf)
        full[..., 1:] = 0.0  # positions without a label: any distribution, never used
        full[mask] = self.expand_rows(stored, n_items, item_text)
        return mask, full

    def expand_rows(self, stored, n_items, item_text=None):
        """(P, n_items) log-probs of the P labelled positions."""
        raise NotImplementedError

    def owns(self, stored):
        """Whether ``stored`` tensors were written by this storage (a set file names no storage for
        its tensors; the keys say which)."""
        return False

    def n_bytes(self, stored):
        """Bytes of the stored tensors (the mask included)."""
        return sum(t.numel() * t.element_size() for t in stored.values())

    def run_options(self, config):
        """Extra :meth:`compress` options a run's config sets (its own keys); none by default."""
        return {}

    def fit_options(self, n_positions, item_text, k, n_writers=1):
        """Extra :meth:`compress` options for a budget of ``n_positions`` labels written by
        ``n_writers`` models (a DIET memory); none by default."""
        return {}

    # ----- a set file -----
    def set_tensors(self, stored):
        """What a set file holds of the labels (its ``label_*`` keys)."""
        return dict(stored or {})

    def read_set_tensors(self, payload):
        """The stored labels of a loaded set file."""
        return {k: v for k, v in payload.items() if k.startswith("label_")}

    # ----- the export sidecar -----
    def to_sidecar(self, labels):
        """``(header fields, payload tensors)`` of the labels in the sidecar, item indices into the
        catalog without padding (``item id - 1``)."""
        raise NotImplementedError(f"label storage {self.name!r} cannot be exported")

    def from_sidecar(self, header, payload, order, ids, n_catalog):
        """The sidecar's labels as :meth:`compress` tensors in the loaded ids (without the mask):
        ``order`` sorts them row-major, ``ids`` maps a sidecar item index to the loaded id."""
        raise NotImplementedError(f"label storage {self.name!r} cannot be read from a sidecar")

    # ----- training on a set of windows -----
    def training_set(self, sequences, stored, teacher, n_items, item_text=None):
        """What a model trains on for real windows ``sequences`` with these labels."""
        from recbole_foster.training_sets import TeacherLabelledSequences

        mask, log_probs = self.expand(stored, n_items, item_text, sequences=sequences)
        labelled = TeacherLabelledSequences(sequences, log_probs)
        if not bool((labelled.label_mask == mask).all()):
            raise ValueError("is damaged: its stored labels do not match its windows.")
        return labelled
