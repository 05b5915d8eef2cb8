"""What every saved small set records, and how its size and family are reported.

*Self-contained*: the saved file (plus the dataset's item texts, which any model of this package
embeds anyway) trains a model. *Teacher-assisted*: the full-data model must label the set while a
model trains on it, so what a user keeps includes the teacher's checkpoint. ``artifact_bytes``
counts what a user must keep to train from the set.
"""

import os

from recbole_foster.distill.artifacts import catalog_fingerprint
from recbole_foster.text_embedding import text_fields_of

SELF_CONTAINED, TEACHER_ASSISTED = "self-contained", "teacher-assisted"


def common_header(ctx):
    """The header fields every saved set shares (data, catalog, text embedding, teacher run)."""
    return {
        "dataset": ctx.config["dataset"],
        "item_catalog": catalog_fingerprint(ctx.dataset),
        "text_encoder": ctx.text_encoder,
        "text_fields": text_fields_of(ctx.config),
        "text_embedding_key": getattr(ctx.dataset, "text_embedding_key", None),
        "n_sequences": ctx.n_sequences,
        "seed": ctx.config["seed"],
        "teacher_run": ctx.real_run.name,  # whose predictions label a teacher-assisted set
    }


def describe_set(ctx, path, needs_teacher):
    """``family``, ``artifact_bytes`` (and what they are made of) of a saved set."""
    # a student started from the teacher's embeddings (paper-compatible protocol) needs the teacher too
    needs_teacher = needs_teacher or ctx.config["distilled_student_init"] == "teacher_embeddings"
    sizes = {"set_file": os.path.getsize(path)}  # a self-contained set needs no real-data run here
    if needs_teacher:
        sizes["teacher_checkpoint"] = os.path.getsize(os.path.join(ctx.real_run.folder, ctx.real_run.manifest["teacher"]))
    return {"set_file": path, "family": TEACHER_ASSISTED if needs_teacher else SELF_CONTAINED,
            "artifact_bytes": sum(sizes.values()), "artifact_bytes_parts": sizes}
