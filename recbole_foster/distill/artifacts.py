"""Saving, loading and exporting a small training set.

Two kinds of set, each one file of plain tensors plus a JSON header string, so
``torch.load(path, weights_only=True)`` reads it and nothing in it executes code:

* a distilled *summary* (``recbole_foster.synthetic/1``): the Tucker factors and temperature;
* real *windows* (``recbole_foster.windows/1``): item-id sequences chosen from the data
  (Random-N, Random-KD-N, the coresets).

Either may carry stored soft labels (:mod:`recbole_foster.stored_labels`). The header names the
dataset, a fingerprint of the item id tokens in row order, the label mode or storage, the real-data run whose
teacher labels a teacher-assisted set, and the text embedding the set was built on: the
embedding table itself is *referenced* (encoder, fields, pooling and a hash of every item text)
and rebuilt from the dataset, not copied, unless ``standalone`` asks for a copy.
``export_atomic`` writes hard sequences as RecBole atomic files.
"""

import hashlib
import json
import os

import torch

from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text
from recbole_foster.label_modes import label_mode_from_header
from recbole_foster.stored_labels import STORAGES

FORMAT = "recbole_foster.synthetic/1"
WINDOWS_FORMAT = "recbole_foster.windows/1"
FORMATS = (FORMAT, WINDOWS_FORMAT)


class NotASet(ValueError):
    """A file that is not a usable recbole_foster set; the message says why."""


def _save(path, payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def save_synthetic(path, summary, header, stored_labels=None, standalone=False):
    """A distilled summary (and its stored labels, if any). ``standalone`` also copies the
    (n_items, d) item factor, so the file trains a model without the dataset's text embeddings."""
    header = {"format": FORMAT, "temperature": summary.temperature, "standalone": bool(standalone), **header}
    payload = {
        "header": json.dumps(header),
        "user_factor": summary.user_factor.detach().cpu(),
        "time_factor": summary.time_factor.detach().cpu(),
        "core": summary.core.detach().cpu(),
        **(stored_labels or {}),
    }
    if standalone:
        payload["item_factor"] = summary.item_factor.detach().cpu()
    if summary.separate_targets:
        payload["target_core"] = summary.target_core.detach().cpu()
    if summary.targets_frozen:
        payload["target_codes"] = summary.target_codes.detach().cpu()
    return _save(path, payload)


def save_windows(path, item_seqs, header, stored_labels=None):
    """Real item-id windows (m, L; 0 = padding) and their stored labels, if any."""
    header = {"format": WINDOWS_FORMAT, **header}
    return _save(path, {"header": json.dumps(header), "item_seqs": item_seqs.int().cpu(), **(stored_labels or {})})


def read_set(path):
    """``(header, payload)`` of a saved set, or :class:`NotASet` saying why it is not one."""
    if not os.path.isfile(path):
        raise NotASet(f"no saved set at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # never suggest weights_only=False for a file we do not know
        raise NotASet(f"{path} is not a recbole_foster set: it cannot be read as plain tensors "
                      f"({type(error).__name__}).") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("header"), str):
        raise NotASet(f"{path} is not a recbole_foster set: it has no header.")
    try:
        header = json.loads(payload["header"])
    except json.JSONDecodeError:
        raise NotASet(f"{path} is not a recbole_foster set: its header is not JSON.") from None
    if header.get("format") not in FORMATS:
        raise NotASet(f"{path} is not a recbole_foster set (format {header.get('format')!r}).")
    return header, payload


def catalog_fingerprint(dataset):
    """``{"n_items", "sha256"}`` of the item id tokens in row order: identifies the catalog a set's
    item ids refer to without storing every token in the set."""
    tokens = list(dataset.field2id_token[dataset.iid_field])
    digest = hashlib.sha256(json.dumps(tokens, ensure_ascii=False).encode("utf-8")).hexdigest()
    return {"n_items": len(tokens), "sha256": digest}


def check_catalog(path, header, dataset):
    """The set was built on ``dataset``'s item ids and text embedding."""
    have = catalog_fingerprint(dataset)
    if header.get("item_catalog") is not None:  # sets saved before the fingerprint kept every token
        same, theirs = header["item_catalog"] == have, header["item_catalog"]["n_items"]
    else:
        tokens = header.get("item_tokens")
        same, theirs = tokens is None or tokens == list(dataset.field2id_token[dataset.iid_field]), len(tokens or [])
    if not same:
        raise ValueError(
            f"{path} was distilled on dataset '{header['dataset']}' with a different item catalog "
            f"than the loaded '{dataset.dataset_name}' ({theirs} vs {have['n_items']} "
            "item ids); evaluate it with the same --dataset and filtering config.")
    wanted, have = header.get("text_embedding_key"), getattr(dataset, "text_embedding_key", None)
    if wanted is not None and have is not None and wanted != have and not header.get("standalone"):
        raise ValueError(
            f"{path} was built on other item text embeddings (encoder {header.get('text_encoder')!r}, "
            f"fields {header.get('text_fields')}) than this run's; use the same --text_encoder, "
            "--text_fields, --text_pooling and --text_max_tokens it was built with.")


def load_synthetic(path, dataset=None):
    """``(summary, label mode, header)`` from a saved summary; checks it matches ``dataset`` if given.

    The label mode is read from the header (``label_mode``), never inferred from the tensors.
    A summary saved without its item factor rebuilds it from ``dataset``'s text embeddings.
    """
    header, payload = read_set(path)
    if header["format"] != FORMAT:
        raise NotASet(f"{path} holds real windows, not a distilled summary.")
    if dataset is not None:
        check_catalog(path, header, dataset)
    mode = label_mode_from_header(header)
    if mode.separate_targets != ("target_core" in payload):
        raise NotASet(f"{path} is damaged: its header names label mode {mode.name!r}, but the file "
                      f"{'lacks' if mode.separate_targets else 'has'} a target core.")
    if "item_factor" in payload:
        item_factor = payload["item_factor"]
    elif dataset is not None and getattr(dataset, "item_text_embeddings", None) is not None:
        item_factor = item_factor_from_text(dataset.item_text_embeddings)
    else:
        raise ValueError(f"{path} references the dataset's text embeddings; load it with its dataset.")
    user_rank, time_rank = payload["user_factor"].size(1), payload["time_factor"].size(1)
    summary = SyntheticSummary(item_factor, payload["user_factor"].size(0),
                               payload["time_factor"].size(0), user_rank, time_rank, header["temperature"],
                               separate_targets=mode.separate_targets)
    with torch.no_grad():
        summary.user_factor.copy_(payload["user_factor"])
        summary.time_factor.copy_(payload["time_factor"])
        summary.core.copy_(payload["core"])
        if summary.separate_targets:
            summary.target_core.copy_(payload["target_core"])
    if "target_codes" in payload:
        summary.freeze_targets(payload["target_codes"])
    return summary, mode, header


def stored_labels_of(payload):
    """The stored-label tensors of a loaded payload (empty when the teacher labels the set)."""
    return {k: v for k, v in payload.items() if k.startswith("label_")}


def label_storage_of(header):
    storage = header.get("label_storage", "teacher")
    if storage not in STORAGES:
        raise NotASet(f"unknown label_storage {storage!r} in a saved set's header.")
    return storage


def export_atomic(folder, name, probs, item_tokens, item_texts=None, mode="top1", seed=0):
    """Write a distilled set as atomic files: one hard sequence per synthetic user.

    ``mode`` = "top1" takes the most likely item per position, "sample" draws one.
    """
    if mode == "top1":
        items = probs.argmax(-1)
    elif mode == "sample":
        generator = torch.Generator().manual_seed(seed)
        flat = probs.reshape(-1, probs.size(-1))
        items = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:2])
    else:
        raise ValueError(f"export mode must be 'top1' or 'sample', got {mode!r}.")
    users = [f"synthetic_{u}" for u in range(items.size(0))]
    return write_atomic_sequences(folder, name, items, users, item_tokens, item_texts)


def write_atomic_sequences(folder, name, items, user_tokens, item_tokens, item_texts=None):
    """Write ``folder/name/name.inter`` (+ ``.item``): row u of ``items`` (m, L; 0 = padding) is user u.

    Timestamps are positions, so RecBole's time ordering replays each sequence as given; any
    RecBole model can then be trained on the set.
    """
    out = os.path.join(folder, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, row in zip(user_tokens, items.tolist()):
            for t, item in enumerate(i for i in row if i > 0):
                f.write(f"{user}\t{item_tokens[item]}\t{t}\n")
    if item_texts is not None:
        with open(os.path.join(out, f"{name}.item"), "w") as f:
            f.write("item_id:token\ttext:token_seq\n")
            for item in sorted(set(items.flatten().tolist()) - {0}):
                text = " ".join(item_texts[item].replace("\t", " ").split())
                f.write(f"{item_tokens[item]}\t{text}\n")
    return out
