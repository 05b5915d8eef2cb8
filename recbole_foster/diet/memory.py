"""DIET's memory: real windows, each with the soft labels of the model that wrote it.

Self-contained like a Random-KD set with stored labels (:mod:`recbole_foster.labels`),
kept as ``diet_label_storage`` says (a storage whose ``memory`` flag is set):

* ``topk``: per labelled position the ``label_topk`` largest probabilities (float16) and their
  items; the rest of the mass is spread evenly;
* ``text_code``: per labelled position a code (r float16 numbers) and, per stage that wrote
  entries, one decoder (r x d float16) over the dataset's item text embeddings; the rank r is the
  largest whose codes and decoders fit in the bytes of top-``label_topk`` labels of a full memory.

An entry keeps its labels until it is replaced, so the memory remembers what the models of
earlier stages predicted. Labels are kept per entry (M, L - 1, ...), so replacing an entry is a
row assignment; a stage's decoder (a storage's ``shared_key`` tensor) is kept while an entry of
that stage is.
"""

from dataclasses import dataclass, field

import torch

from recbole_foster.model import students
from recbole_foster.labels import code_rank, expand, get_storage, storage_of
from recbole_foster.labels import window_label_mask as label_mask  # positions that are trained on
from recbole_foster.training_sets import TeacherLabelledSequences


def trained_positions(windows):
    """(m,) positions each window trains on: the labelled positions it takes in a memory."""
    return label_mask(windows).sum(1)


def memory_code_rank(size, max_len, text_dim, k, n_stages):
    """The text-code rank of a memory of ``size`` windows whose codes and ``n_stages`` decoders take
    no more bytes than top-k labels of every position of a full memory."""
    return code_rank(size * (max_len - 1), text_dim, k, n_decoders=n_stages)


def _per_entry(values, mask):
    """(P, ...) per labelled position -> (M, L - 1, ...) with zeros where no label is."""
    out = values.new_zeros(*mask.shape, *values.shape[1:])
    out[mask] = values
    return out


@dataclass
class Memory:
    windows: torch.Tensor  # (M, L) item ids, 0 = padding
    users: torch.Tensor  # (M,) user ids
    rows: torch.Tensor  # (M,) training-split row of each window (identifies it across stages)
    added: torch.Tensor  # (M,) stage (1-based) in which the entry was written
    labels: dict  # per entry (M, L - 1, ...): topk_probs + topk_items, or codes
    decoders: dict = field(default_factory=dict)  # text_code: {stage: (r, d) float16}

    @classmethod
    def labelled(cls, model, windows, users, rows, stage, k, storage="topk", item_text=None, options=None):
        """Windows labelled by ``model``: its next-item distribution after each prefix, kept by
        ``storage`` (a :class:`~recbole_foster.labels.base.LabelStorage` or its name; ``options``
        for its fit, :meth:`~recbole_foster.labels.base.LabelStorage.fit_options`)."""
        storage = get_storage(storage) if isinstance(storage, str) else storage
        windows = windows.long()
        mask = label_mask(windows)
        log_probs = students.next_item_log_probs(model, windows)
        stored = storage.compress(log_probs, mask, k, item_text, **{"device": students._device(model), **(options or {})})
        labels = {key[len("label_"):]: _per_entry(value, mask.cpu()) for key, value in stored.items()
                  if key not in ("label_mask", storage.shared_key)}
        decoders = {int(stage): stored[storage.shared_key]} if storage.shared_key else {}
        return cls(windows, users.long(), torch.as_tensor(rows).long(),
                   torch.full((len(windows),), stage, dtype=torch.long), labels, decoders)

    def __len__(self):
        return len(self.windows)

    @property
    def label_mask(self):
        return label_mask(self.windows)

    @property
    def storage(self):
        """The name of the storage that wrote the labels."""
        return storage_of({f"label_{key}": value for key, value in self.labels.items()}).name

    def stored(self):
        """The labels in the format a set file holds (``label_mask`` and ``label_*`` tensors); with a
        shared tensor per writer (text codes' decoders), one per stage and, per position, which one."""
        mask = self.label_mask
        stored = {"label_mask": mask, **{f"label_{key}": value[mask] for key, value in self.labels.items()}}
        if self.decoders:
            stages = sorted(self.decoders)
            which = torch.tensor([stages.index(int(s)) for s in self.added.tolist()], dtype=torch.uint8)
            shared = storage_of(stored).shared_key
            stored[shared] = torch.stack([self.decoders[s] for s in stages])
            stored[f"{shared}_of"] = which.unsqueeze(1).expand_as(mask)[mask].clone()
        return stored

    def target_log_probs(self, n_items, item_text=None):
        """(M, L - 1, n_items) the stored labels as log-distributions (:func:`~recbole_foster.labels.expand`)."""
        return expand(self.stored(), n_items, item_text)[1]

    def training_set(self, n_items, item_text=None):
        """What a model trains on: the windows with their stored labels."""
        return TeacherLabelledSequences(self.windows, self.target_log_probs(n_items, item_text))

    def replaced(self, slots, other, picks):
        """A copy whose entries ``slots`` are ``other``'s entries ``picks`` (windows, labels and all)."""
        def assign(mine, theirs):
            value = mine.clone()
            value[slots] = theirs[picks]
            return value

        labels = {name: assign(value, other.labels[name]) for name, value in self.labels.items()}
        added = assign(self.added, other.added)
        decoders = {**self.decoders, **{s: d for s, d in other.decoders.items() if s in set(other.added[picks].tolist())}}
        kept = set(added.tolist())
        return Memory(assign(self.windows, other.windows), assign(self.users, other.users),
                      assign(self.rows, other.rows), added, labels,
                      {s: d for s, d in decoders.items() if s in kept})

    def select(self, index):
        """A copy holding the entries ``index`` (in that order); decoders of stages no longer held drop."""
        index = torch.as_tensor(index, dtype=torch.long)
        added = self.added[index]
        kept = set(added.tolist())
        return Memory(self.windows[index], self.users[index], self.rows[index], added,
                      {name: value[index] for name, value in self.labels.items()},
                      {s: d for s, d in self.decoders.items() if s in kept})

    def extended(self, other):
        """A copy with ``other``'s entries appended (a memory that grows with the stream)."""
        if other is None or len(other) == 0:
            return self
        return Memory(torch.cat([self.windows, other.windows]), torch.cat([self.users, other.users]),
                      torch.cat([self.rows, other.rows]), torch.cat([self.added, other.added]),
                      {name: torch.cat([value, other.labels[name]]) for name, value in self.labels.items()},
                      {**self.decoders, **other.decoders})

    def with_labels(self, labels):
        """The same entries with other labels of the same storage, shapes and dtypes (a refinement)."""
        for name, value in self.labels.items():
            if labels[name].shape != value.shape or labels[name].dtype != value.dtype:
                raise ValueError(f"refined labels {name!r} must keep shape {tuple(value.shape)} and {value.dtype}")
        return Memory(self.windows, self.users, self.rows, self.added, dict(labels), dict(self.decoders))

    def n_labels(self):
        """Labelled positions: the interactions the memory teaches (its size in targets)."""
        return int(self.label_mask.sum())

    def state(self):
        return {"windows": self.windows, "users": self.users, "rows": self.rows, "added": self.added,
                "labels": dict(self.labels), "decoders": dict(self.decoders)}

    @classmethod
    def from_state(cls, state):
        return cls(state["windows"], state["users"], state["rows"], state["added"], dict(state["labels"]),
                   {int(s): d for s, d in state["decoders"].items()})

    def equals(self, other):
        same = all(torch.equal(getattr(self, n), getattr(other, n)) for n in ("windows", "users", "rows", "added"))
        return (same and self.labels.keys() == other.labels.keys() and self.decoders.keys() == other.decoders.keys()
                and all(torch.equal(v, other.labels[n]) for n, v in self.labels.items())
                and all(torch.equal(v, other.decoders[s]) for s, v in self.decoders.items()))
