"""Small sets of real users: Random-N, Random-KD-N (teacher's soft labels) and the coresets.

Every set is judged by :func:`~recbole_foster.evaluation.evaluate_training_set`, like a distilled one.
"""

from recbole_foster.distill.artifacts import write_atomic_sequences
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.methods import METHODS
from recbole_foster.text_embedding import item_texts, text_fields_of
from recbole_foster.training_sets import HardSequences, TeacherLabelledSequences


def _user_tokens(ctx, users):
    token = ctx.dataset.field2id_token[ctx.dataset.uid_field]
    return [token[u] for u in users.tolist()]


def _result(ctx, label, result, users, **extra):
    return {**result, "selected_users": _user_tokens(ctx, users), **extra,
            "table": {"Full": ctx.real_run.manifest["test"], label: result["test"]}}


def run_random(ctx):
    """N real training users chosen uniformly at random (the run's Random-N draw)."""
    users, sequences = ctx.random_draw
    label = METHODS["random"].row_label(len(users))
    return _result(ctx, label, evaluate_training_set(ctx, HardSequences(sequences), desc=label), users)


def run_random_kd(ctx):
    """The Random-N users trained on the real-data model's soft next-item distributions."""
    users, sequences = ctx.random_draw
    label = METHODS["random_kd"].row_label(len(users))
    result = evaluate_training_set(ctx, TeacherLabelledSequences(sequences, ctx.teacher), desc=label)
    return _result(ctx, label, result, users)


def run_coreset(ctx):
    """``--method=kcenter|dealrec|goracs``: N real users chosen by a coreset algorithm, judged like Random-N."""
    from recbole_foster.coreset.selectors import select

    method, n = ctx.config["method"], ctx.n_sequences
    users, sequences = ctx.candidates
    with ctx.timed("select"):
        chosen = select(ctx, method, ctx.teacher, sequences, n)
    users, sequences = users[chosen], sequences[chosen]
    label = METHODS[method].row_label(n)
    result = evaluate_training_set(ctx, HardSequences(sequences), desc=label)
    exported = None
    if ctx.config["export_atomic"]:
        exported = write_atomic_sequences(
            ctx.config["export_atomic"], f"{ctx.config['dataset']}-{method}{n}", sequences, _user_tokens(ctx, users),
            list(ctx.dataset.field2id_token[ctx.dataset.iid_field]), item_texts(ctx.dataset, text_fields_of(ctx.config)))
    return _result(ctx, label, result, users, exported_atomic=exported)
