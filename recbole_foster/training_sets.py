"""Small training sets and the loss a model is trained with on each.

``HardSequences`` (real item ids, next-item cross-entropy), ``TeacherLabelledSequences`` (real
item ids, the teacher's soft next-item labels: Random-KD) and ``SoftSequences`` (distributions
over the catalog: distilled sets). Each has ``len()`` and ``loss(model, rows)``, which is all
:func:`recbole_foster.evaluation.train_and_select` needs.
"""

import torch
import torch.nn.functional as F

from recbole_foster.model import students


def _device(model):
    return next(model.parameters()).device


def _rows_on(cache, tensor, rows, device):
    """``tensor[rows]`` on ``device``. A set is not changed after it is made, so it is copied to
    the device once (kept in ``cache``) and every step reads its batch there, with no host copy;
    a set too large to sit beside the training (over a quarter of the free device memory) stays
    on the host and each step copies only its batch."""
    if tensor.device != device and device not in cache and fits_on(tensor, device):
        cache.clear()  # one device at a time
        cache[device] = tensor.to(device)
    source = cache.get(device, tensor)
    return source[torch.as_tensor(rows, device=source.device)].to(device)


def fits_on(tensor, device):
    """Whether ``tensor`` may be kept on ``device`` beside training: always on the host; on a GPU
    when it takes at most a quarter of the free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return tensor.numel() * tensor.element_size() <= free // 4


def soft_sequence_loss(model, log_probs, item_ids, target_log_probs=None):
    """KL(next-position target || model prediction) on soft sequences over the items ``item_ids``.

    ``log_probs`` (m, n, K) are the sequences' log-distributions. Inputs are positions 0..n-2
    embedded as probability-weighted mixes of the model's item representations; targets are the
    distributions at positions 1..n-1 (FOSTER App. B.2) of ``target_log_probs``, which default
    to ``log_probs`` itself (TD3/FOSTER's coupled tensor). Targets enter as log-probabilities:
    differentiating ``p log p`` through a probability that underflowed to 0 gives NaN.
    """
    targets = log_probs if target_log_probs is None else target_log_probs
    hidden, used = students.target_hidden(model, log_probs.exp(), item_ids)
    log_pred = F.log_softmax(students.scores(model, hidden[used], item_ids), dim=-1)
    return F.kl_div(log_pred, targets[:, 1:][used], reduction="none", log_target=True).sum(-1).mean()


def teacher_soft_labels(teacher, log_probs, item_ids):
    """(m, n, K) targets for soft sequences: the teacher's next-item prediction from each prefix.

    Position t + 1's label is the teacher's distribution over ``item_ids`` after reading the soft
    inputs 0..t (label mode ``teacher``), so labels always agree with the current inputs.
    Position 0 has no prefix and is never a target; it holds the inputs' own row. Gradients flow
    to ``log_probs`` (a label is a function of the inputs), never into the frozen teacher.
    """
    hidden = teacher.encode_soft(log_probs[:, :-1].exp(), item_ids)
    labels = torch.log_softmax(teacher.scores(hidden, item_ids), dim=-1)
    return torch.cat([log_probs[:, :1], labels], dim=1)


class SoftSequences:
    """Synthetic soft sequences, given as log-distributions (m, n, n_items) over the catalog.

    ``target_log_probs`` are separate soft labels (label modes ``separate``, ``fixed``); None means the
    inputs are also the targets. The padding item (column 0, probability 0) is left out.
    """

    def __init__(self, log_probs, target_log_probs=None):
        self.log_probs = log_probs[..., 1:]
        self.target_log_probs = None if target_log_probs is None else target_log_probs[..., 1:]
        self._device_copies, self._target_copies = {}, {}

    def __len__(self):
        return self.log_probs.size(0)

    def loss(self, model, rows):
        device = _device(model)
        log_probs = _rows_on(self._device_copies, self.log_probs, rows, device)
        targets = self.target_log_probs
        if targets is not None:
            targets = _rows_on(self._target_copies, targets, rows, device)
        items = torch.arange(1, log_probs.size(-1) + 1, device=log_probs.device)
        return soft_sequence_loss(model, log_probs, items, targets)


class HardSequences:
    """Real item-id sequences (m, L), right-padded with 0: next-item cross-entropy at every position."""

    def __init__(self, item_seqs):
        self.item_seqs = item_seqs
        self._device_copies = {}

    def _seqs(self, rows, device):
        """The sequences of ``rows``, read from a copy of the set kept on ``device``."""
        return _rows_on(self._device_copies, self.item_seqs, rows, device)

    def __len__(self):
        return self.item_seqs.size(0)

    def loss(self, model, rows):
        seqs = self._seqs(rows, _device(model))
        targets = seqs[:, 1:]
        hidden, used = students.target_hidden(model, seqs, has_target=targets > 0)
        return F.cross_entropy(students.scores(model, hidden[used]), targets[used])


class TeacherLabelledSequences(HardSequences):
    """Real sequences with soft next-item labels as KL targets: the teacher's (Random-KD), or the
    same labels as a saved set stores them (:mod:`recbole_foster.labels`).

    Separates what soft labels alone add from what synthetic sequences add (DD-Ranking).
    ``target_log_probs`` (m, L - 1, n_items) label position t + 1 from the prefix up to t.
    Training reads only the positions that have a target, kept once as a flat table of
    probabilities (the set is not changed after it is made): gathering the dense (m, L - 1,
    n_items) tensor at every step cost about a third of a step for 100 amazon-games windows
    (benchmarks/small_set_step.py).
    """

    def __init__(self, item_seqs, target_log_probs):
        super().__init__(item_seqs)
        self.target_log_probs = target_log_probs
        self._flat = None

    @classmethod
    def from_teacher(cls, item_seqs, teacher):
        return cls(item_seqs, students.next_item_log_probs(teacher, item_seqs))

    @property
    def label_mask(self):
        """(m, L - 1): the positions that are trained on (a real item follows a real item)."""
        return (self.item_seqs[:, 1:] > 0) & (self.item_seqs[:, :-1] > 0)

    def _flat_labels(self, device):
        """(index (m, L - 1) into the table, -1 where no target; probabilities (P, n_items - 1);
        sum p log p per row (P,)), built on first use on ``device``."""
        if self._flat is None or self._flat[1].device != device:
            has_target = self.item_seqs[:, 1:] > 0
            index = torch.full(has_target.shape, -1, dtype=torch.long)
            index[has_target] = torch.arange(int(has_target.sum()))
            probs = self.target_log_probs.detach()[has_target][:, 1:].exp().to(device)
            neg_entropy = torch.xlogy(probs, probs).sum(-1)  # 0 log 0 = 0
            self._flat = (index.to(device), probs, neg_entropy)
        return self._flat

    def loss(self, model, rows):
        seqs = self._seqs(rows, _device(model))
        index, probs, neg_entropy = self._flat_labels(seqs.device)
        hidden, used = students.target_hidden(model, seqs, has_target=seqs[:, 1:] > 0)
        labels = index[torch.as_tensor(rows, device=seqs.device)][used]
        log_pred = F.log_softmax(students.scores(model, hidden[used])[:, 1:], dim=-1)
        # KL(p || q) = sum p log p - sum p log q, the first term read from the table
        return (neg_entropy[labels] - (probs[labels] * log_pred).sum(-1)).mean()
