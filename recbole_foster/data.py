"""Dataset loading on top of RecBole: input checks, item texts and their embeddings.

RecBole's own errors for a mistyped dataset or a missing column are a pandas traceback deep in
``Dataset._load_feat``; here the common mistakes are caught first with a message that says what
to fix. Item texts are rebuilt from the ``.item`` token_seq columns and embedded once (cached).
"""

import os

import numpy as np
import torch
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data.dataset import SequentialDataset



class DatasetError(ValueError):
    """A dataset that cannot be used as configured; the message says how to fix it."""


def atomic_file(config, suffix):
    return os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")


def check_atomic_files(config, need_item_file):
    """Fail early, naming the expected paths, when the atomic files are not where RecBole looks."""
    inter = atomic_file(config, "inter")
    if not os.path.isfile(inter):
        folder = config["data_path"]
        found = sorted(os.listdir(folder)) if os.path.isdir(folder) else None
        hint = f"the folder holds {found}" if found is not None else "the folder does not exist"
        raise DatasetError(
            f"Unknown dataset '{config['dataset']}': expected the RecBole atomic file {inter} "
            f"({hint}). Pass --data_path=<folder that contains {config['dataset']}/> "
            "(e.g. --data_path=../shared/data), or a --dataset that exists there."
        )
    item = atomic_file(config, "item")
    if need_item_file and not os.path.isfile(item):
        raise DatasetError(
            f"Dataset '{config['dataset']}' has no item file {item}; a text-based model needs item "
            "texts. Add a .item atomic file with a text column (e.g. item_id:token title:token_seq)."
        )
    if need_item_file:
        with open(item, encoding=config["encoding"] or "utf-8") as f:
            header = f.readline().rstrip("\n").split(config["field_separator"])
        columns = [h.split(":")[0] for h in header]
        missing = [f for f in text_fields_of(config) if f not in columns]
        if missing:
            raise DatasetError(
                f"text_fields {missing} are not columns of {item} (its columns: {columns}). "
                f"Choose from them, e.g. --text_fields={columns[1] if len(columns) > 1 else 'title'}."
            )
        load_col = config["load_col"]
        if load_col is not None and "item" in load_col:
            absent = [f for f in text_fields_of(config) if f not in load_col["item"]]
            if absent:
                raise DatasetError(
                    f"text_fields {absent} are not loaded: add them to load_col['item'] "
                    f"(currently {load_col['item']})."
                )


def text_fields_of(config):
    from recbole_foster.text_embedding import parse_text_fields

    return parse_text_fields(config["text_fields"])


def window_rows(user_ids, max_len):
    """Rows of a user-grouped, time-ordered sample list that end non-overlapping windows.

    RecBole makes one sample per target (each prefix, truncated to ``max_len`` items). Keeping
    every ``max_len``-th sample counted back from each user's last one, and training on every
    position of it, covers each target exactly once: the paper's sliding-window preprocessing,
    at 1/max_len of the compute.
    """
    user_ids = np.asarray(user_ids)
    boundaries = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1], True])
    keep = []
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        keep.extend(range(end - 1, start - 1, -max_len)[::-1])
    return np.asarray(keep, dtype=np.int64)


class WindowedSequentialDataset(SequentialDataset):
    """SequentialDataset whose training split keeps one sample per window (see :func:`window_rows`).

    Used for models that learn from every position of a sample (``trains_all_positions``);
    validation and test splits are RecBole's, unchanged.
    """

    def build(self):
        datasets = super().build()
        train = datasets[0]
        uid = train.inter_feat[train.uid_field].numpy()
        if len(uid) > 1 and (np.diff(uid) != 0).sum() + 1 != len(np.unique(uid)):
            raise RuntimeError("training samples are not grouped by user; cannot build windows.")
        keep = window_rows(uid, self.config["MAX_ITEM_LIST_LENGTH"])
        datasets[0] = train.copy(train.inter_feat[torch.from_numpy(keep)])
        return datasets


def create_dataset(config):
    """RecBole's ``create_dataset`` after checking files and text fields.

    ``eval_protocol`` picks the split: ``loo`` (default) is RecBole's own (``eval_args.split``),
    ``global_temporal`` the paper's time-based 8:1:1 split (:mod:`recbole_foster.protocol`).
    Models that train on every position get the windowed training split when
    ``train_window`` is on (the default); otherwise the dataset is RecBole's own.
    """
    from recbole_foster.protocol import eval_protocol_of, global_temporal_dataset

    protocol = eval_protocol_of(config)
    check_atomic_files(config, need_item_file=getattr(config.model_class, "requires_item_text", False))
    windowed = bool(getattr(config.model_class, "trains_all_positions", False) and config["train_window"])
    if protocol == "global_temporal":
        return global_temporal_dataset(config, windowed)
    if windowed:
        return WindowedSequentialDataset(config)
    return recbole_create_dataset(config)


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
    from recbole_foster.text_embedding import get_text_embeddings  # transformers only when needed

    texts = item_texts(dataset, text_fields_of(config))
    table, used, _info = get_text_embeddings(
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
    table = torch.as_tensor(np.asarray(table, dtype=np.float32)).clone()
    table[0] = 0.0
    dataset.item_text_embeddings = table
    dataset.text_encoder_used = used
    return used
