"""The interface of a ``--method``: what a run asks a method, stage by stage.

A method is a subclass of :class:`Method` registered by name
(:func:`recbole_foster.methods.register_method`). The pipeline (:mod:`recbole_foster.run`) asks it,
in this order:

1. :meth:`Method.check` (before any data is loaded): its own input checks;
2. :meth:`Method.check_data` (after loading, before text embedding or any training): checks
   that need the data;
3. :meth:`Method.prepare_inputs`: the real-data run, the teacher, a saved set, which become
   fields of the :class:`~recbole_foster.context.RunContext` the method runs with;
4. :meth:`Method.banner_lines`, then :meth:`Method.run`, which returns its part of results.json
   (``valid``, ``test`` and ``table`` at least).

It declares as attributes its table label, whether it builds a small set, which models it
supports (:data:`MODEL_SUPPORT`), whether it uses the teacher, and the YAML file of its config
keys' defaults (``config_file``, read by the config layer). :meth:`Method.family` and
:meth:`Method.needs_teacher` say whether its sets need the teacher while a model trains on them.
docs/extending.md walks through writing one.
"""

import re

from recbole_foster.config import uses_item_text
from recbole_foster.labels import get_storage

SELF_CONTAINED, TEACHER_ASSISTED = "self-contained", "teacher-assisted"

# What each ``models`` value admits (checked before data loading).
MODEL_SUPPORT = {
    "any": "any RecBole or recbole_foster model",
    "student": "a model that trains on small sets: SASRec, GRU4Rec, NARM, BERT4Rec or their text forms "
               "TextSASRec, TextGRU4Rec, TextNARM, TextBERT4Rec",
    "causal": "a left-to-right model (its per-position states rank the candidates): SASRec, GRU4Rec, NARM, "
              "TextSASRec, TextGRU4Rec, TextNARM",
    "TextSASRec": "TextSASRec (the distillation and generation code is written for it)",
}


def with_n(text, n):
    """A summary with its size placeholder (``n_sequences``, ``N``) filled in."""
    return text if n is None else re.sub(r"\bn_sequences\b|\bN\b", str(n), text)


class Method:
    """Base class of every method; subclasses override what differs."""

    name = None  # the --method value
    label = None  # how its rows are named in tables ("FOSTER" -> "FOSTER-20")
    summary = ""  # one line for --help and the docs (n_sequences / N are replaced by the size)
    small_set = True  # builds a set of n_sequences sequences (False: full, eval, diet)
    models = "student"  # which --model it runs with: a key of MODEL_SUPPORT
    uses_teacher = True  # loads the real-data run's teacher before it runs
    config_file = None  # YAML of the defaults of its own config keys (absolute path), or None
    reads_synthetic = False  # takes --synthetic
    resumable = False  # --resume continues an interrupted run of it
    exports = True  # --export_atomic writes its set

    # ----- names -----
    def row_label(self, n):
        return f"{self.label}-{n}" if self.small_set and n else self.label

    def output_name(self, config):
        """The folder name of its default output dir (``outputs/<dataset>/<model>/<name>/seed<seed>``)."""
        n = config["n_sequences"]
        return self.name + (f"-{n}" if n else "")

    # ----- what its sets need -----
    def label_storage(self, config):
        """The :class:`~recbole_foster.labels.base.LabelStorage` its set's labels are kept with."""
        return get_storage("hard")

    def needs_teacher(self, config):
        """Whether a model trained on its set needs the teacher (the set is teacher-assisted)."""
        return self.label_storage(config).needs_teacher or config["distilled_student_init"] == "teacher_embeddings"

    def family(self, config):
        return TEACHER_ASSISTED if self.needs_teacher(config) else SELF_CONTAINED

    def reads_item_text(self, config):
        """Whether the run needs the dataset's item texts (a text model, or labels kept as codes over them)."""
        return uses_item_text(config)

    # ----- checks -----
    def check(self, config):
        """Its own input checks, before any data is loaded; raise :class:`~recbole_foster.cli.CLIError`."""

    def check_data(self, ctx):
        """Checks that need the loaded data, before text embedding or any training. By default a
        small set must not ask for more sequences than there are training users."""
        if self.small_set:
            from recbole_foster.errors import DatasetError

            n, users = ctx.n_sequences, len(ctx.candidates[0])
            if n > users:
                raise DatasetError(f"--n_sequences={n} but the training split has only {users} users; "
                                   f"choose at most {users}.")

    # ----- stage 4: what it runs with -----
    def prepare_inputs(self, ctx):
        """``{"real_run", "teacher", "saved_set"}`` for the run context: by default the real-data run
        (trained now or reused) and, if ``uses_teacher``, its teacher."""
        from recbole_foster.real_run import ensure_real_run

        real_run = ensure_real_run(ctx)
        teacher = real_run.load_teacher(lambda: ctx.new_model(ctx.config["seed"])) if self.uses_teacher else None
        return {"real_run": real_run, "teacher": teacher, "saved_set": None}

    # ----- what a run prints -----
    def banner_lines(self, ctx):
        """``(title, lines)`` of the banner printed before it runs."""
        n = ctx.n_sequences if self.small_set else None
        return self.row_label(n), [with_n(self.summary, n)]

    def evaluated_sets(self, config, n):
        """The row labels of the sets it judges, in order (one evaluation banner each)."""
        return [self.row_label(n)]

    def describe_row(self, config, n):
        """What its row of the final table is (the legend under the table)."""
        return with_n(self.summary, n)

    # ----- the method -----
    def run(self, ctx):
        """Build (or read) the set, judge it; returns the method's part of results.json."""
        raise NotImplementedError
