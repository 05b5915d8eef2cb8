"""Input checks before RecBole loads a dataset.

RecBole's own errors for a mistyped dataset or a missing column are a pandas traceback deep in
``Dataset._load_feat``; here the common mistakes are caught first with a message that says what
to fix.
"""

import os

from recbole_foster.errors import DatasetError
from recbole_foster.text_embedding import text_fields_of


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


def count_empty_item_texts(config, dataset):
    """How many items (padding excluded) have no text: every text field empty, or no .item row.

    Such items all get the same text embedding, so a text-only model cannot tell them apart;
    the count is logged as a warning and reported in results.json (``empty_item_texts``).
    """
    from logging import getLogger

    from recbole_foster.text_embedding import item_texts

    fields = text_fields_of(config)
    texts = item_texts(dataset, fields)
    empty = [i for i, text in enumerate(texts) if i > 0 and not text.strip()]
    if empty:
        tokens = dataset.field2id_token[dataset.iid_field]
        examples = ", ".join(str(tokens[i]) for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
        getLogger().warning(
            f"{len(empty)} of {len(texts) - 1} items have an empty or missing text in text_fields {fields} "
            f"(item ids {examples}); they all get the same text embedding, so the model cannot tell them apart. "
            "Fill in their text in the .item file, or add a text field that they have.")
    return len(empty)
