"""``label_storage: teacher``: nothing is stored; the teacher (the full-data model) labels the set
whenever a model is trained on it, so the set is *teacher-assisted*."""

from recbole_foster.labels.base import LabelStorage


class TeacherStorage(LabelStorage):
    name = "teacher"
    needs_teacher = True
    summary = "nothing stored: the teacher labels the set while a model trains (teacher-assisted)"

    def compress(self, log_probs, mask, k=None, item_text=None, **options):
        return {}

    def training_set(self, sequences, stored, teacher, n_items, item_text=None):
        from recbole_foster.training_sets import TeacherLabelledSequences

        return TeacherLabelledSequences.from_teacher(sequences, teacher)
