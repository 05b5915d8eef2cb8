"""The atomic files a run reads, checked before RecBole reads them: headers, columns, malformed lines.

RecBole trusts its input. Without ``load_col`` it loads only the user and item ids of the
``.inter`` file (its default), so a dataset of one's own fails deep inside RecBole for lack of a
timestamp; a line with one field too few is padded with NaN and changes the counts silently.
:func:`prepare_atomic_files` runs before any loading and

* reads each header (``name:type`` columns; a header RecBole cannot parse is a clear error);
* when neither the user (YAML files, command line) nor a dataset YAML sets ``load_col``, takes
  the columns from the headers: ``inter``: user id, item id and the timestamp when the file has
  one (plus any column named by ``val_interval``); ``item``: item id and the ``text_fields``;
* finds lines whose field count differs from the header's. By default that is an error naming
  the count and the first line numbers. With ``skip_malformed: True`` the good lines are copied
  to ``<checkpoint_dir>/clean_data/<dataset>-<hash>/`` (hash of the source files' paths, sizes and
  modification times, so the copy is made once and reused) and ``data_path`` points there:
  RecBole then reads only the good lines, and the run's config records where they came from.

Field counts follow pandas' reading (RecBole reads with ``pandas.read_csv(engine="python")``):
the ``csv`` module with the same separator and quote character, blank lines skipped.
"""

import csv
import hashlib
import json
import logging
import os
import sys

import yaml

from recbole_foster.dataset.checks import check_atomic_files
from recbole_foster.errors import DatasetError
from recbole_foster.text_embedding import text_fields_of

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
SHOWN_LINES = 5  # line numbers quoted in a message
CLEAN_FOLDER = "clean_data"

logger = logging.getLogger(__name__)


def atomic_path(config, suffix):
    """``<data_path>/<dataset>.<suffix>`` (RecBole's ``data_path`` already ends in the dataset folder)."""
    return os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")


def _encoding(config):
    return config["encoding"] or "utf-8"


def read_header(path, separator, encoding="utf-8"):
    """``[(name, type), ...]`` of an atomic file's first line; a DatasetError for one RecBole cannot read."""
    with open(path, encoding=encoding, newline="") as f:
        line = f.readline()
    if line.endswith("\r\n"):  # RecBole strips only the "\n": its last column's type would end in "\r"
        raise DatasetError(f"{path} has Windows line endings (CRLF); RecBole reads Unix ones (LF). Convert it, "
                           "e.g. with dos2unix or sed -i 's/\\r$//'.")
    if line.startswith("\ufeff"):
        raise DatasetError(f"{path} starts with a byte-order mark; save it as UTF-8 without one (RecBole would read "
                           "it as part of the first column's name).")
    line = line.rstrip("\r\n")
    if not line.strip():
        raise DatasetError(f"{path} is empty or its first line is blank; the first line must be the header, "
                           "e.g. user_id:token<TAB>item_id:token<TAB>timestamp:float.")
    columns = []
    for cell in line.split(separator):
        name, sep, ftype = cell.partition(":")
        if not sep or not name or ftype not in FIELD_TYPES:
            raise DatasetError(
                f"{path}: header column {cell!r} is not name:type with type one of {', '.join(FIELD_TYPES)} "
                f"(header: {line!r}; field_separator {separator!r}).")
        columns.append((name, ftype))
    names = [name for name, _ in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"{path}: header names {duplicates} more than once.")
    return columns


def _dataset_yaml_sets(config, key):
    """Whether a dataset YAML (the plugin's or RecBole's own) sets ``key`` for this dataset."""
    from recbole_foster.config import PROPERTIES_DIR
    import recbole

    folders = [os.path.join(PROPERTIES_DIR, "dataset"),
               os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset")]
    for folder in folders:
        path = os.path.join(folder, f"{config['dataset']}.yaml")
        if os.path.isfile(path):
            with open(path) as f:
                if key in (yaml.safe_load(f) or {}):
                    return True
    return False


def user_sets(config, key):
    """Whether the user set ``key`` (in a --config_files YAML or on the command line)."""
    return key in (getattr(config, "file_config_dict", None) or {}) or \
        key in (getattr(config, "variable_config_dict", None) or {})


def default_load_col(config, inter_columns, item_columns, text_fields):
    """``load_col`` from the headers (see the module docstring)."""
    names = [name for name, _ in inter_columns]
    inter = [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]]
    if config["TIME_FIELD"] in names:
        inter.append(config["TIME_FIELD"])
    for field in (config["val_interval"] or {}):
        if field in names and field not in inter:
            inter.append(field)
    load_col = {"inter": inter}
    if item_columns is not None and text_fields:
        load_col["item"] = [config["ITEM_ID_FIELD"]] + [f for f in text_fields if f != config["ITEM_ID_FIELD"]]
    return load_col


def _loads(load_col, suffix):
    """Whether RecBole loads the ``suffix`` file under ``load_col`` (None = every file)."""
    return load_col is None or suffix in load_col


def check_id_columns(config, inter_path, inter_columns, item_path, item_columns, needs_time):
    names = [name for name, _ in inter_columns]
    for key in ("USER_ID_FIELD", "ITEM_ID_FIELD"):
        if config[key] not in names:
            raise DatasetError(
                f"{inter_path} has no column {config[key]!r} ({key}); its columns: {names}. Rename the "
                f"column in the header or pass --{key}=<the column that holds it>.")
    if item_columns is not None and config["ITEM_ID_FIELD"] not in [n for n, _ in item_columns]:
        raise DatasetError(
            f"{item_path} has no column {config['ITEM_ID_FIELD']!r} (ITEM_ID_FIELD); its columns: "
            f"{[n for n, _ in item_columns]}. The .item file must name the item id like the .inter file.")
    time_field = config["TIME_FIELD"]
    types = dict(inter_columns)
    if needs_time and time_field not in types:
        raise DatasetError(
            f"{inter_path} has no timestamp column {time_field!r} (TIME_FIELD); its columns: {names}. "
            "Each user's interactions are ordered by time (and --eval_protocol=global_temporal splits by it): "
            f"add a column '{time_field}:float' (a time, or the interaction's position in the user's history), "
            "or pass --TIME_FIELD=<your time column>.")
    if needs_time and types[time_field] != "float":
        raise DatasetError(f"{inter_path}: the timestamp column must be declared '{time_field}:float', "
                           f"not '{time_field}:{types[time_field]}'.")


def scan_malformed(path, separator, encoding="utf-8"):
    """``(n_fields, [(first line, last line) of each malformed record], n_records)``; line 1 is the header.

    A record spans more than one line only when a quoted field holds a line break.
    """
    n_fields = len(read_header(path, separator, encoding))
    bad, n_records = [], 0
    with open(path, encoding=encoding, newline="") as f:
        if len(separator) == 1:
            reader = csv.reader(f, delimiter=separator, quotechar='"')
            next(reader)
            last = reader.line_num
            for row in reader:
                first, last = last + 1, reader.line_num
                if not row:
                    continue  # blank line: pandas skips it
                n_records += 1
                if len(row) != n_fields:
                    bad.append((first, last))
        else:  # pandas reads a multi-character separator as a regular expression, without quoting
            f.readline()
            for number, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                n_records += 1
                if len(line.split(separator)) != n_fields:
                    bad.append((number, number))
    return n_fields, bad, n_records


def _lines(bad):
    shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in bad[:SHOWN_LINES])
    return shown + (f" (and {len(bad) - SHOWN_LINES} more)" if len(bad) > SHOWN_LINES else "")


def malformed_message(path, n_fields, bad):
    return (f"{path} has {len(bad)} malformed line{'s' if len(bad) > 1 else ''} (not {n_fields} fields like its "
            f"header): line{'s' if len(bad) > 1 else ''} {_lines(bad)}")


def _source_key(paths, separator, encoding):
    stats = [[os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns] for p in sorted(paths)]
    blob = json.dumps({"files": stats, "separator": separator, "encoding": encoding})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_clean_copy(config, bad_by_suffix):
    """A folder with the dataset's files, malformed records of ``bad_by_suffix`` left out; returns it.

    Files without malformed lines are symlinked (copied where links are not possible).
    """
    source, dataset = config["data_path"], config["dataset"]
    files = sorted(f for f in os.listdir(source) if f.startswith(dataset + ".")
                   and os.path.isfile(os.path.join(source, f)))
    key = _source_key([os.path.join(source, f) for f in files], config["field_separator"], _encoding(config))
    root = config["checkpoint_dir"] or "saved"
    folder = os.path.join(root, CLEAN_FOLDER, f"{dataset}-{key}")
    os.makedirs(folder, exist_ok=True)
    for name in files:
        src, dst = os.path.join(source, name), os.path.join(folder, name)
        if os.path.exists(dst):
            continue  # same key: the same source files, already cleaned
        suffix = name[len(dataset) + 1:]
        tmp = dst + ".tmp"
        if suffix in bad_by_suffix:
            dropped = set()
            for first, last in bad_by_suffix[suffix]:
                dropped.update(range(first, last + 1))
            with open(src, encoding=_encoding(config), newline="") as fin, \
                    open(tmp, "w", encoding=_encoding(config), newline="") as fout:
                for number, line in enumerate(fin, start=1):
                    if number not in dropped:
                        fout.write(line)
        else:
            try:
                os.symlink(os.path.abspath(src), tmp)
            except OSError:
                import shutil

                shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return folder


def prepare_atomic_files(config, needs_item_text):
    """Check the atomic files and settle ``load_col`` and ``data_path`` before RecBole reads them.

    Returns ``{"malformed_lines_dropped": {suffix: count}}`` (empty when nothing was dropped);
    may set ``config["load_col"]`` (from the headers) and ``config["data_path"]`` (a cleaned copy).
    """
    check_atomic_files(config, need_item_file=needs_item_text)
    separator, encoding = config["field_separator"], _encoding(config)
    inter_path, item_path = atomic_path(config, "inter"), atomic_path(config, "item")
    inter_columns = read_header(inter_path, separator, encoding)
    item_columns = read_header(item_path, separator, encoding) if os.path.isfile(item_path) else None

    if not user_sets(config, "load_col") and not _dataset_yaml_sets(config, "load_col"):
        text_fields = text_fields_of(config) if needs_item_text else []
        derived = default_load_col(config, inter_columns, item_columns, text_fields)
        if derived != config["load_col"]:
            logger.info(f"load_col taken from the atomic files' headers: {derived}")
        config["load_col"] = derived
    load_col = config["load_col"]
    # RecBole orders each user's interactions by time (eval_args.order TO, the default); the
    # global_temporal protocol splits by it
    needs_time = (config["eval_protocol"] or "loo") == "global_temporal" or \
        (config["eval_args"] or {}).get("order", "TO") == "TO"
    check_id_columns(config, inter_path, inter_columns,
                     item_path, item_columns if _loads(load_col, "item") else None, needs_time)
    if needs_time and load_col is not None and config["TIME_FIELD"] not in (load_col.get("inter") or []):
        raise DatasetError(
            f"load_col['inter'] {load_col.get('inter')} leaves out the timestamp {config['TIME_FIELD']!r}, which "
            "orders each user's interactions; add it (or leave load_col unset: the columns then come from the "
            "files' headers).")

    bad_by_suffix, messages = {}, []
    for suffix, path in (("inter", inter_path), ("item", item_path)):
        if not os.path.isfile(path) or not _loads(load_col, suffix):
            continue
        n_fields, bad, _ = scan_malformed(path, separator, encoding)
        if bad:
            bad_by_suffix[suffix] = bad
            messages.append(malformed_message(path, n_fields, bad))
    if not bad_by_suffix:
        return {"malformed_lines_dropped": {}}
    if not config["skip_malformed"]:
        raise DatasetError("; ".join(messages) + ". Fix those lines, or pass --skip_malformed=True to drop them.")
    folder = write_clean_copy(config, bad_by_suffix)
    dropped = {suffix: len(bad) for suffix, bad in bad_by_suffix.items()}
    warning = (f"{'; '.join(messages)}. Dropped them (--skip_malformed=True): {sum(dropped.values())} line(s); "
               f"RecBole reads a cleaned copy in {folder}.")
    print(f"warning: {warning}", file=sys.stderr, flush=True)  # before RecBole's logger is set up
    config["data_path"] = folder
    return {"malformed_lines_dropped": dropped}
