"""Real windows trained on their next items (Random-N, the coresets): no soft labels at all.

Not a ``--label_storage`` value; a set file names it (``label_storage: hard``) so that a loader
knows how the set trains."""

from recbole_foster.labels.base import LabelStorage


class HardStorage(LabelStorage):
    name = "hard"
    selectable = False
    summary = "no soft labels: next-item cross-entropy on the windows"

    def compress(self, log_probs, mask, k=None, item_text=None, **options):
        return {}

    def training_set(self, sequences, stored, teacher, n_items, item_text=None):
        from recbole_foster.training_sets import HardSequences

        return HardSequences(sequences)


class SummaryStorage(HardStorage):
    """A distilled summary whose labels are part of the summary itself (its label mode)."""

    name = "summary"
    summary = "the labels are part of the distilled summary (its label mode)"
