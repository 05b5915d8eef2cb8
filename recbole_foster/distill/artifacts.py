"""Saving, loading and exporting a small training set.

Two kinds of set, each one file of plain tensors plus a JSON header string; nothing in either
executes code when read:

* a distilled *summary* (``recbole_foster.synthetic/1``): the Tucker factors and temperature, a
  ``torch.save`` file (``torch.load(path, weights_only=True)`` reads it);
* real *windows* (``recbole_foster.windows/2``): item-id sequences chosen from the data
  (Random-N, Random-KD-N, the coresets), a safetensors file (the header is its ``header``
  metadata) without the windows' padding: a few kB where a zip container would add 1.5 kB.
  Files of the older ``windows/1`` (a ``torch.save`` file of padded windows) still load.

Either may carry stored soft labels (:mod:`recbole_foster.labels`). The header names the
dataset, a fingerprint of the item id tokens in row order, the label mode or storage, the real-data run whose
teacher labels a teacher-assisted set, and the text embedding the set was built on: the
embedding table itself is *referenced* (encoder, fields, pooling and a hash of every item text)
and rebuilt from the dataset, not copied, unless ``standalone`` asks for a copy.
:func:`write_atomic_sequences` exports a set as RecBole atomic files (``--export_atomic``), so
that any RecBole model, or any other tool, can train on it; a set with self-contained soft labels
also gets a sidecar of them (:func:`write_soft_labels`, format ``recbole_foster.soft_labels/1``,
keyed by item tokens). :func:`load_atomic_set` reads such a folder back (``--method=eval``).
"""

import hashlib
import json
import os

import safetensors
import safetensors.torch
import torch

from recbole_foster.distill.precision import PRECISIONS, at_precision, restored
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text
from recbole_foster.label_modes import label_mode_from_header
from recbole_foster.labels import get_storage, storage_of, window_label_mask

FORMAT = "recbole_foster.synthetic/1"
WINDOWS_FORMAT = "recbole_foster.windows/2"
WINDOW_FORMATS = ("recbole_foster.windows/1", WINDOWS_FORMAT)
FORMATS = (FORMAT, *WINDOW_FORMATS)


class NotASet(ValueError):
    """A file that is not a usable recbole_foster set; the message says why."""


def _save(path, payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def save_synthetic(path, summary, header, stored_labels=None, standalone=False, precision="fp32"):
    """A distilled summary (and its stored labels, if any). ``standalone`` also copies the
    (n_items, d) item factor, so the file trains a model without the dataset's text embeddings.
    ``precision`` (fp32 | fp16 | int8, :mod:`~recbole_foster.distill.precision`) is how its factors
    are kept; the header records it and :func:`load_synthetic` dequantises."""
    header = {"format": FORMAT, "temperature": summary.temperature, "standalone": bool(standalone),
              "precision": precision, **header}
    payload = {
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
    return _save(path, {"header": json.dumps(header), **at_precision(payload, precision)})


def save_windows(path, item_seqs, header, stored_labels=None):
    """Real item-id windows (m, L; 0 = padding) and their stored labels, if any, in as few bytes as
    they take without loss. Right-padded windows (the real items first, as RecBole pads) may be
    written as their real ids back to back plus one length per window: on short histories most of a
    window is padding (62% on amazon-games at L = 20); the smaller of the two layouts is written.
    Ids are int16 when every id fits (catalogs under 32,768 items), int32 otherwise. The label mask
    is not written when the windows imply it (:func:`window_label_mask`). :func:`read_set` gives
    back the padded (m, L) windows and :func:`stored_labels_of` the mask. Who the windows came from
    is provenance, kept in the run's ``results.json``, not in the set."""
    item_seqs = item_seqs.cpu().contiguous()
    largest = int(item_seqs.max()) if item_seqs.numel() else 0
    id_type = torch.int16 if largest <= torch.iinfo(torch.int16).max else torch.int32
    labels = dict(stored_labels or {})
    mask = labels.get("label_mask")
    if mask is not None and torch.equal(mask.bool().cpu(), window_label_mask(item_seqs)):
        del labels["label_mask"]
    layouts = [({}, {"item_seqs": item_seqs.to(id_type)})]
    real = item_seqs > 0
    lengths = real.sum(1)
    if torch.equal(real, torch.arange(item_seqs.size(1)) < lengths[:, None]):  # right padding
        length_type = torch.uint8 if item_seqs.size(1) <= torch.iinfo(torch.uint8).max else torch.int32
        layouts.append(({"window_length": item_seqs.size(1)},
                        {"item_ids": item_seqs[real].to(id_type), "window_lengths": lengths.to(length_type)}))
    labels = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in labels.items()}
    written = [safetensors.torch.save({**windows, **labels},
                                      metadata={"header": json.dumps({"format": WINDOWS_FORMAT, **header, **extra})})
               for extra, windows in layouts]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(min(written, key=len))
    os.replace(path + ".tmp", path)
    return path


def _unpacked_windows(path, header, payload):
    """The padded (m, L) windows of a file that stores them back to back."""
    ids, lengths = payload.pop("item_ids"), payload.pop("window_lengths").long()
    width = header.get("window_length")
    if (not isinstance(width, int) or ids.dim() != 1 or lengths.dim() != 1 or int(lengths.sum()) != ids.numel()
            or (lengths > width).any()):
        raise NotASet(f"{path} is a damaged recbole_foster set: its window lengths do not match its item ids.")
    windows = torch.zeros(len(lengths), width, dtype=ids.dtype)
    windows[torch.arange(width) < lengths[:, None]] = ids
    return windows


def is_torch_archive(path):
    """A ``torch.save`` file begins with a zip entry; a safetensors file with its header's length.
    (``zipfile.is_zipfile`` looks for an end-of-archive signature anywhere near the end, which a
    pair of item ids can spell.)"""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _read_tensors(path):
    """The dict a set file holds: a ``torch.save`` zip (summaries, older window sets) or a
    safetensors file (window sets), whose ``header`` metadata joins its tensors."""
    if is_torch_archive(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    with safetensors.safe_open(path, framework="pt") as f:
        return {**(f.metadata() or {}), **{key: f.get_tensor(key) for key in f.keys()}}


def read_set(path):
    """``(header, payload)`` of a saved set, or :class:`NotASet` saying why it is not one."""
    if not os.path.isfile(path):
        raise NotASet(f"no saved set at {path}.")
    try:
        payload = _read_tensors(path)
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
    if "window_lengths" in payload:
        payload["item_seqs"] = _unpacked_windows(path, header, payload)
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
    same, theirs = header.get("item_catalog") == have, (header.get("item_catalog") or {}).get("n_items")
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
    precision = header.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise NotASet(f"{path} keeps its factors at an unknown precision {precision!r}.")
    payload = restored(payload, precision)
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
    """The stored-label tensors of a loaded payload (empty when the teacher labels the set), with
    the label mask of real windows that :func:`save_windows` left out."""
    stored = {k: v for k, v in payload.items() if k.startswith("label_")}
    if stored and "label_mask" not in stored and "item_seqs" in payload:
        stored["label_mask"] = window_label_mask(payload["item_seqs"].long())
    return stored


def label_storage_of(header):
    """The :class:`~recbole_foster.labels.base.LabelStorage` a saved set's header names."""
    try:
        return get_storage(header.get("label_storage", "teacher"))
    except ValueError:
        raise NotASet(f"unknown label_storage {header.get('label_storage')!r} in a saved set's header.") from None


def hard_sequences(probs, mode="top1", seed=0):
    """(m, n) item ids of soft sequences (m, n, n_items): ``mode`` = "top1" takes the most likely
    item per position, "sample" draws one (seeded)."""
    if mode == "top1":
        return probs.argmax(-1)
    if mode == "sample":
        generator = torch.Generator().manual_seed(seed)
        flat = probs.reshape(-1, probs.size(-1))
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:2])
    raise ValueError(f"export mode must be 'top1' or 'sample', got {mode!r}.")


# ----- RecBole atomic files (--export_atomic) and their soft-labels sidecar -----
SOFT_LABELS_FORMAT = "recbole_foster.soft_labels/1"
INTER_HEADER = ("user_id:token", "item_id:token", "timestamp:float")


def atomic_inter_file(folder):
    """``folder/<name>.inter`` of an exported set folder ``.../<name>/``."""
    return os.path.join(folder, os.path.basename(os.path.normpath(folder)) + ".inter")


def soft_labels_file(folder):
    """``folder/<name>.soft_labels.pt``: the soft labels beside an exported set's ``.inter``."""
    return os.path.join(folder, os.path.basename(os.path.normpath(folder)) + ".soft_labels.pt")


def write_atomic_sequences(folder, name, items, user_tokens, item_tokens, item_texts=None, labels=None,
                           label_header=None):
    """Write ``folder/name/name.inter`` (+ ``.item``): row u of ``items`` (m, L; 0 = padding) is user u.

    Timestamps are positions, so RecBole's time ordering replays each sequence as given; any
    RecBole model can then be trained on the set. ``labels`` (stored-label tensors, see
    :func:`write_soft_labels`) also write the soft-labels sidecar; without them a sidecar left by an
    earlier export to the same folder is removed, so the folder never pairs a set with stale labels.
    """
    out = os.path.join(folder, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.inter"), "w") as f:
        f.write("\t".join(INTER_HEADER) + "\n")
        for user, row in zip(user_tokens, items.tolist()):
            for t, item in enumerate(i for i in row if i > 0):
                f.write(f"{user}\t{item_tokens[item]}\t{t}\n")
    if item_texts is not None:
        with open(os.path.join(out, f"{name}.item"), "w") as f:
            f.write("item_id:token\ttext:token_seq\n")
            for item in sorted(set(items.flatten().tolist()) - {0}):
                text = " ".join(item_texts[item].replace("\t", " ").split())
                f.write(f"{item_tokens[item]}\t{text}\n")
    sidecar = soft_labels_file(out)
    if labels:
        write_soft_labels(sidecar, items, user_tokens, item_tokens, labels, label_header)
    elif os.path.exists(sidecar):
        os.remove(sidecar)
    return out


def write_soft_labels(path, items, user_tokens, item_tokens, labels, header=None):
    """The sidecar of an exported set: one soft label per labelled ``.inter`` row, keyed by tokens.

    ``labels`` are :meth:`~recbole_foster.labels.base.LabelStorage.compress` tensors whose ``label_mask`` is
    (m, L) over the positions of ``items`` (True: the item at that position has a soft label).
    Internal ids are replaced by indices into ``item_tokens[1:]`` (the catalog without padding,
    stored once in the header), so the file means the same to any loader of the atomic files;
    each label names its row by user token (index into ``user_tokens``) and position (the row's
    timestamp in the ``.inter``). The payload is plain tensors and a JSON-able header, readable
    with ``torch.load(path, weights_only=True)``; README.md ("Exported sets") documents it.
    """
    mask = labels["label_mask"]
    rows = mask.nonzero()  # row-major, the order compress() stored the labels in
    positions = ((items > 0).long().cumsum(1) - 1)[rows[:, 0], rows[:, 1]]  # rank among the row's items
    catalog = [str(t) for t in item_tokens[1:]]
    storage = storage_of(labels)
    fields, tensors = storage.to_sidecar(labels)
    payload = {
        "header": {
            "format": SOFT_LABELS_FORMAT, **(header or {}), "storage": storage.name, "k": fields.get("k"),
            "n_labels": len(rows), "item_tokens": catalog, "user_tokens": [str(u) for u in user_tokens],
        },
        "user": rows[:, 0].int(),
        "position": positions.int(),
        **tensors,
    }
    return _save(path, payload)


def read_soft_labels(path):
    """``(header, payload)`` of a soft-labels sidecar, or :class:`NotASet` saying why it is not one."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # never suggest weights_only=False for a file we do not know
        raise NotASet(f"{path} is not a recbole_foster soft-labels file: it cannot be read as plain tensors "
                      f"({type(error).__name__}).") from None
    header = payload.get("header") if isinstance(payload, dict) else None
    if not isinstance(header, dict) or header.get("format") != SOFT_LABELS_FORMAT:
        raise NotASet(f"{path} is not a recbole_foster soft-labels file (format "
                      f"{header.get('format') if isinstance(header, dict) else None!r}).")
    return header, payload


def read_atomic_sequences(path):
    """``(user tokens in order of appearance, each user's item tokens ordered by timestamp)``."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = lines[0].split("\t") if lines else []
    if not set(INTER_HEADER) <= set(header):
        raise NotASet(f"{path} is not an exported set: its header must name {', '.join(INTER_HEADER)} "
                      f"(got {lines[0] if lines else 'an empty file'!r}).")
    user_col, item_col, time_col = (header.index(column) for column in INTER_HEADER)
    rows = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        try:
            rows.setdefault(cells[user_col], []).append((float(cells[time_col]), cells[item_col]))
        except (IndexError, ValueError):
            raise NotASet(f"{path}, line {number}: not {len(header)} tab-separated fields with a numeric "
                          "timestamp.") from None
    if not rows:
        raise NotASet(f"{path} holds no interactions.")
    return list(rows), [[item for _, item in sorted(events, key=lambda e: e[0])] for events in rows.values()]


def _unknown(tokens, known):
    unknown = sorted({t for t in tokens if known.get(t, 0) <= 0})  # 0 is RecBole's [PAD]
    return f"{len(unknown)} item token{'s' if len(unknown) > 1 else ''} (e.g. {unknown[0]!r})" if unknown else None


def load_atomic_set(folder, dataset, max_len):
    """``(item_seqs (m, max_len), stored labels, header)`` of an exported set folder, in ``dataset``'s ids.

    Item tokens map to the loaded dataset's ids; a token it does not know is a ValueError naming
    how many and one of them. The sidecar's labels, if present, come back as the
    :meth:`~recbole_foster.labels.base.LabelStorage.compress` tensors of the windows' positions 1..L-1 (index t
    labels position t + 1), exactly what a ``set.pt`` with stored labels holds, so the set trains as a
    :class:`~recbole_foster.training_sets.TeacherLabelledSequences`; without a sidecar they are empty.
    """
    inter = atomic_inter_file(folder)
    users, sequences = read_atomic_sequences(inter)
    token_id = dataset.field2token_id[dataset.iid_field]
    unknown = _unknown([t for seq in sequences for t in seq], token_id)
    if unknown:
        raise ValueError(f"{inter} has {unknown} that the loaded dataset '{dataset.dataset_name}' does not "
                         "know; evaluate it with the --dataset (and filtering config) it was exported from.")
    longest = max(len(seq) for seq in sequences)
    if longest > max_len:
        raise ValueError(f"{inter} holds sequences of up to {longest} items, longer than the "
                         f"--MAX_ITEM_LIST_LENGTH={max_len} a model reads; pass --MAX_ITEM_LIST_LENGTH={longest}.")
    item_seqs = torch.zeros(len(sequences), max_len, dtype=torch.long)
    for row, seq in enumerate(sequences):
        item_seqs[row, : len(seq)] = torch.tensor([token_id[t] for t in seq])
    header = {"format": "RecBole atomic files", "inter_file": inter, "n_sequences": len(users),
              "label_storage": None, "soft_labels_file": None}
    sidecar = soft_labels_file(folder)
    if not os.path.isfile(sidecar):
        return item_seqs, {}, header
    labels_header, payload = read_soft_labels(sidecar)
    stored = _stored_labels(sidecar, labels_header, payload, users, item_seqs, dataset)
    described = {k: v for k, v in labels_header.items()
                 if k not in ("format", "inter_file", "item_tokens", "user_tokens")}
    header.update(described, label_storage=labels_header["storage"], soft_labels_file=sidecar)
    return item_seqs, stored, header


def _stored_labels(path, header, payload, users, item_seqs, dataset):
    """The sidecar's labels as compress() tensors over ``dataset``'s ids and ``item_seqs``' positions."""
    token_id = dataset.field2token_id[dataset.iid_field]
    theirs = header["item_tokens"]
    n_catalog = len(dataset.field2id_token[dataset.iid_field]) - 1
    unknown = _unknown(theirs, token_id)
    if unknown or len(set(theirs)) != n_catalog:  # the rest of a top-k label is spread over the whole catalog
        unknown = f", and {unknown} unknown to it" if unknown else ""
        raise ValueError(f"{path} labels items of another catalog ({len(theirs)} items; the loaded dataset "
                         f"'{dataset.dataset_name}' has {n_catalog}{unknown}); evaluate it with the --dataset "
                         "(and filtering config) it was exported from.")
    row_of = {user: row for row, user in enumerate(users)}
    label_users = [header["user_tokens"][u] for u in payload["user"].tolist()]
    strangers = sorted({u for u in label_users if u not in row_of})
    if strangers:
        raise ValueError(f"{path} labels {len(strangers)} users that are not in the .inter beside it "
                         f"(e.g. {strangers[0]!r}); keep the files of one export together.")
    rows = torch.tensor([row_of[u] for u in label_users], dtype=torch.long)
    positions = payload["position"].long()
    expected = window_label_mask(item_seqs)  # every position after each user's first
    mask = torch.zeros_like(expected)
    inside = (positions >= 1) & (positions < item_seqs.size(1))
    mask[rows[inside], positions[inside] - 1] = True
    if not bool(inside.all()) or int(mask.sum()) != len(rows) or not torch.equal(mask, expected):
        raise ValueError(f"{path} does not match the .inter beside it: it must label every position after "
                         "each user's first exactly once.")
    order = torch.argsort(rows * item_seqs.size(1) + positions)  # compress() keeps labels in row-major order
    ids = torch.tensor([token_id[t] for t in theirs])  # sidecar item index -> loaded id
    try:
        storage = get_storage(header["storage"])
    except ValueError:
        raise NotASet(f"{path} holds labels of an unknown storage {header['storage']!r}.") from None
    if storage.needs_item_text and getattr(dataset, "text_embedding_key", None) != header.get("text_embedding_key"):
        raise ValueError(f"{path} holds labels as codes over the item texts embedded by "
                         f"{header.get('text_encoder')!r}, but this run embeds them differently; evaluate it "
                         "with the --text_encoder (and text fields) it was exported with.")
    return {"label_mask": mask, **storage.from_sidecar(header, payload, order, ids, n_catalog)}
