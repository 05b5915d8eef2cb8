"""DIET's memory: real windows, each with the top-k soft labels of the model that wrote it.

Self-contained like a Random-KD set with ``label_storage: topk``: item ids (M, L) and, per
labelled position, the ``label_topk`` largest probabilities (float16) and their items; the rest of
the mass is spread evenly (:mod:`recbole_foster.stored_labels`). An entry keeps its labels until it
is replaced, so the memory remembers what the models of earlier stages predicted. Labels are kept
per entry (M, L - 1, k), so replacing an entry is a row assignment.
"""

from dataclasses import dataclass

import torch

from recbole_foster.model import students
from recbole_foster.stored_labels import compress, expand
from recbole_foster.training_sets import TeacherLabelledSequences


def label_mask(windows):
    """(m, L - 1): positions that are trained on (a real item follows a real item)."""
    return (windows[:, 1:] > 0) & (windows[:, :-1] > 0)


@dataclass
class Memory:
    windows: torch.Tensor  # (M, L) item ids, 0 = padding
    users: torch.Tensor  # (M,) user ids
    rows: torch.Tensor  # (M,) training-split row of each window (identifies it across stages)
    added: torch.Tensor  # (M,) stage (1-based) in which the entry was written
    topk_probs: torch.Tensor  # (M, L - 1, k) float16
    topk_items: torch.Tensor  # (M, L - 1, k) int32

    @classmethod
    def labelled(cls, model, windows, users, rows, stage, k):
        """Windows labelled by ``model``: its next-item distribution after each prefix, top-k stored."""
        windows = windows.long()
        mask = label_mask(windows)
        stored = compress(students.next_item_log_probs(model, windows), mask, "topk", k)
        probs = torch.zeros(*mask.shape, k, dtype=torch.float16)
        items = torch.zeros(*mask.shape, k, dtype=torch.int32)
        probs[mask], items[mask] = stored["label_topk_probs"], stored["label_topk_items"]
        return cls(windows, users.long(), torch.as_tensor(rows).long(),
                   torch.full((len(windows),), stage, dtype=torch.long), probs, items)

    def __len__(self):
        return len(self.windows)

    @property
    def label_mask(self):
        return label_mask(self.windows)

    def stored(self):
        """The labels in :func:`recbole_foster.stored_labels.compress`'s format (a set file holds these)."""
        mask = self.label_mask
        return {"label_mask": mask, "label_topk_probs": self.topk_probs[mask],
                "label_topk_items": self.topk_items[mask]}

    def target_log_probs(self, n_items):
        """(M, L - 1, n_items) the stored labels as log-distributions (:func:`~recbole_foster.stored_labels.expand`)."""
        return expand(self.stored(), n_items)[1]

    def training_set(self, n_items):
        """What a model trains on: the windows with their stored labels."""
        return TeacherLabelledSequences(self.windows, self.target_log_probs(n_items))

    def replaced(self, slots, other, picks):
        """A copy whose entries ``slots`` are ``other``'s entries ``picks`` (windows, labels and all)."""
        fields = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name).clone()
            value[slots] = getattr(other, name)[picks]
            fields[name] = value
        return Memory(**fields)

    def n_labels(self):
        """Labelled positions: the interactions the memory teaches (its size in targets)."""
        return int(self.label_mask.sum())

    def state(self):
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_state(cls, state):
        return cls(**{name: state[name] for name in cls.__dataclass_fields__})

    def equals(self, other):
        return all(torch.equal(getattr(self, n), getattr(other, n)) for n in self.__dataclass_fields__)
