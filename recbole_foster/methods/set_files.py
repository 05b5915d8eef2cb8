"""What every saved small set records, and how its size and family are reported.

*Self-contained*: the saved file (plus the dataset's item texts, which any model of this package
embeds anyway) trains a model. *Teacher-assisted*: the full-data model must label the set while a
model trains on it, so what a user keeps includes the teacher's checkpoint. ``artifact_bytes``
counts what a user must keep to train from the set.
"""

import os

from recbole_foster.distill.artifacts import catalog_fingerprint, soft_labels_file, write_atomic_sequences
from recbole_foster.labels import storage_of
from recbole_foster.text_embedding import item_texts, text_fields_of

SELF_CONTAINED, TEACHER_ASSISTED = "self-contained", "teacher-assisted"


def common_header(ctx, n_sequences=None):
    """The header fields every saved set shares (data, catalog, text embedding, teacher run);
    ``n_sequences``: the set's size when it is not the run's ``n_sequences``."""
    return {
        "dataset": ctx.config["dataset"],
        "model": ctx.config["model"],  # the model whose real-data run built (and, if any, labels) the set
        "item_catalog": catalog_fingerprint(ctx.dataset),
        "text_encoder": ctx.text_encoder,
        "text_fields": text_fields_of(ctx.config),
        "text_embedding_key": getattr(ctx.dataset, "text_embedding_key", None),
        "n_sequences": ctx.n_sequences if n_sequences is None else n_sequences,
        "seed": ctx.config["seed"],
        "teacher_run": ctx.real_run.name,  # whose predictions label a teacher-assisted set
    }


def describe_set(ctx, path, needs_teacher, files=None):
    """``family``, ``artifact_bytes`` (and what they are made of) of a saved set.

    ``files``: the files the set is made of when ``path`` is not one file (an exported atomic
    folder: its ``.inter`` and soft-labels sidecar; its ``.item`` copy of the texts is not needed)."""
    # a student started from the teacher's embeddings (paper-compatible protocol) needs the teacher too
    needs_teacher = needs_teacher or ctx.config["distilled_student_init"] == "teacher_embeddings"
    # a self-contained set needs no real-data run here
    sizes = {os.path.basename(f): os.path.getsize(f) for f in files} if files else {"set_file": os.path.getsize(path)}
    if needs_teacher:
        sizes["teacher_checkpoint"] = os.path.getsize(os.path.join(ctx.real_run.folder, ctx.real_run.manifest["teacher"]))
    return {"set_file": path, "family": TEACHER_ASSISTED if needs_teacher else SELF_CONTAINED,
            "artifact_bytes": sum(sizes.values()), "artifact_bytes_parts": sizes}


def export_set(ctx, items, user_tokens, labels=None, teacher_assisted=False):
    """``--export_atomic=DIR``: the set as RecBole atomic files in ``DIR/<dataset>-<method><m>/``.

    ``items`` (m, L) are the hard sequences. ``labels`` (stored-label tensors, ``label_mask`` over the
    positions of ``items``) are the set's self-contained soft labels, written beside the ``.inter``
    (:func:`~recbole_foster.distill.artifacts.write_soft_labels`), so the export loses nothing a
    model trains on. A teacher-assisted set has no labels to write: the teacher makes them while
    a model trains. Returns the results.json fields, and says in the log what was written.
    """
    folder = ctx.config["export_atomic"]
    if not folder:
        return {"exported_atomic": None, "exported_soft_labels": None, "exported_labels": None}
    dataset, n = ctx.dataset, len(items)
    name = f"{ctx.config['dataset']}-{ctx.config['method']}{n}"
    header = {"dataset": ctx.config["dataset"], "method": ctx.config["method"], "inter_file": f"{name}.inter"}
    if labels and storage_of(labels).needs_item_text:  # codes or a label model read these text embeddings
        header.update(text_encoder=ctx.text_encoder, text_embedding_key=getattr(dataset, "text_embedding_key", None))
    out = write_atomic_sequences(folder, name, items, user_tokens, list(dataset.field2id_token[dataset.iid_field]),
                                 item_texts(dataset, text_fields_of(ctx.config)), labels, header)
    sidecar = soft_labels_file(out) if labels else None
    if sidecar:
        kept, note = "soft", f"with their soft labels in {sidecar}"
    elif teacher_assisted:
        kept = "none: teacher-assisted (label_storage=teacher)"
        note = ("hard sequences only: the set is teacher-assisted (label_storage=teacher), its labels are made "
                "by the teacher during training and not stored; --label_storage=topk would export them")
    else:
        kept, note = "none: hard set", "hard sequences only: the set has no soft labels"
    ctx.logger.info(f"Exported {n} sequences as RecBole atomic files to {out}, {note}")
    return {"exported_atomic": out, "exported_soft_labels": sidecar, "exported_labels": kept}
