"""Turn raw Amazon Reviews 2018 and Yelp Open Dataset dumps (and SeqRec Benchmark archives) into RecBole atomic files.

    python dataset/prepare.py amazon --reviews Video_Games.json.gz --meta meta_Video_Games.json.gz \
        --name amazon-games --out DIR
    python dataset/prepare.py yelp --business yelp_academic_dataset_business.json \
        --reviews yelp_academic_dataset_review.json --city Nashville --name yelp --out DIR
    python dataset/prepare.py seqrec --archive amazon2014-beauty/proc.zip --name amazon-beauty --out DIR
    python dataset/prepare.py stats DIR/NAME/NAME.inter

Dumps of many GB are streamed line by line; only compact (user, item, time, rating) columns and
the texts of the items that survive the k-core filter are kept. See dataset/README.md for the
cleaning rules.
"""

import argparse
import ast
import gzip
import html
import io
import json
import math
import os
import pickle
import re
import sys
import zipfile
import zlib
from array import array
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from tqdm import tqdm

MAX_WORDS = 128  # per text field: the text encoder reads ~64 tokens, RecBole pads token_seq to the longest row
KIND_PROBE_RECORDS = 10
KIND_PROBE_LINES = 1000

AMAZON_ITEM_HEADER = ["item_id:token", "title:token_seq", "description:token_seq", "brand:token",
                      "categories:token_seq"]
YELP_ITEM_HEADER = ["item_id:token", "title:token_seq", "categories:token_seq"]
INTER_HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
SEQREC_ITEM_HEADER = ["item_id:token", "title:token_seq"]
SEQREC_INTER_HEADER = ["user_id:token", "item_id:token", "timestamp:float"]  # the archives keep no rating
SEQREC_FILES = ("user2item.pkl", "item2title.pkl")

# name -> (what the user should have passed, keys every such record has, keys it never has)
KINDS = {
    "amazon-reviews": ("Amazon 2018 review records (e.g. Video_Games.json.gz)",
                       {"reviewerID", "asin"}, set()),
    "amazon-meta": ("Amazon 2018 metadata records (e.g. meta_Video_Games.json.gz)",
                    {"asin"}, {"reviewerID"}),
    "yelp-business": ("Yelp business records (yelp_academic_dataset_business.json)",
                      {"business_id", "city"}, {"review_id"}),
    "yelp-reviews": ("Yelp review records (yelp_academic_dataset_review.json)",
                     {"review_id", "user_id", "business_id"}, set()),
}

_ID = re.compile(r'[^\s"]+')
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_SPACE = re.compile(r"[\s\x00-\x1f\x7f]+")


class UserError(Exception):
    """A problem with the command line or the input files: reported without traceback, exit 2."""


# ---------------------------------------------------------------------------------------------
# Reading dumps


def open_binary(path):
    """The file's byte stream (ungzipped when it starts with the gzip magic, whatever its name)
    and the raw file underneath, whose position measures progress."""
    raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    return (gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw), raw


def parse_line(line):
    """A dict from one line in strict JSON or, as in the older dumps, a Python literal; else None."""
    text = line.decode("utf-8", "replace").strip()
    try:
        record = json.loads(text)
    except ValueError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return record if isinstance(record, dict) else None


def iter_records(path, parse, skipped):
    """``parse(record)`` of every record of a JSON-lines dump that is not None, with a progress bar
    over the bytes read. Unparseable lines and records ``parse`` rejects are counted in
    ``skipped[basename]``; blank lines are ignored."""
    name = os.path.basename(path)
    skipped.setdefault(name, 0)
    stream, raw = open_binary(path)
    with raw, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=name) as bar:
        try:
            for n, line in enumerate(stream, 1):
                if n % 8192 == 0:
                    bar.update(raw.tell() - bar.n)
                if not line.strip():
                    continue
                record = parse_line(line)
                value = None if record is None else parse(record)
                if value is None:
                    skipped[name] += 1
                else:
                    yield value
        except (EOFError, OSError, zlib.error) as error:
            raise UserError(f"{path}: cannot be read to the end ({error}); the file is damaged or "
                            "truncated, download it again.") from None
        bar.update(raw.tell() - bar.n)


def check_input(path, kind):
    """Fail fast, before any heavy work, when ``path`` is missing or holds the wrong kind of records."""
    expected, required, forbidden = KINDS[kind]
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found; expected {expected}.")
    records = []
    stream, raw = open_binary(path)
    with raw:
        try:
            head = stream.read(512)
            if head.startswith(b"PK\x03\x04") or head[257:262] == b"ustar":
                raise UserError(f"{path}: is a zip/tar archive; extract it and pass {expected}.")
            stream.seek(0)
            for n, line in enumerate(stream):
                record = parse_line(line) if line.strip() else None
                if record is not None:
                    records.append(record)
                if len(records) == KIND_PROBE_RECORDS or n == KIND_PROBE_LINES:
                    break
        except (EOFError, OSError, zlib.error) as error:
            raise UserError(f"{path}: cannot be read as gzip ({error}); expected {expected}.") from None
    if not records:
        raise UserError(f"{path}: no JSON records in its first lines; expected {expected}.")
    if not any(required <= r.keys() and not forbidden & r.keys() for r in records):
        keys = sorted(records[0].keys())[:12]
        raise UserError(f"{path}: holds records with keys {keys}; expected {expected} "
                        f"(keys {sorted(required)}). Were two files swapped?")


def check_output(out, name):
    """Create ``out/name`` up front so a bad --out fails before the dumps are read."""
    if not name or os.sep in name or name in (".", ".."):
        raise UserError(f"--name {name!r}: must be a plain folder name such as amazon-games.")
    folder = os.path.join(out, name)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create {folder} ({error}).") from None
    return folder


# ---------------------------------------------------------------------------------------------
# Records -> fields


def clean_id(value):
    """An id usable as a RecBole token (no whitespace, no quotes), else None."""
    value = str(value).strip() if isinstance(value, (str, int)) else ""
    return value if _ID.fullmatch(value) else None


def flatten(value):
    """Strings of a text value that may be a string, a list or (older dumps) a list of lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in flatten(v)]
    return []


def clean_text(value, sep=" "):
    """One line of plain text: HTML entities decoded, tags removed, every run of whitespace or
    control characters (tabs, newlines, carriage returns) made one space, at most MAX_WORDS words."""
    parts = (_SPACE.sub(" ", _TAG.sub(" ", html.unescape(s))).strip() for s in flatten(value))
    words = sep.join(p for p in parts if p).split(" ")
    return " ".join(words[:MAX_WORDS])


def unix_time(value):
    """Seconds since the epoch from a number or an ISO date such as Yelp's '2016-03-09 00:44:42' (UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp()


def interaction(user, item, time, rating):
    """The (user, item, time, rating) tuple, or None when a field is missing or invalid."""
    try:
        row = (clean_id(user), clean_id(item), unix_time(time), float(rating))
    except (TypeError, ValueError):
        return None
    return row if None not in row and math.isfinite(row[2]) and math.isfinite(row[3]) else None


def amazon_interaction(record):
    return interaction(record.get("reviewerID"), record.get("asin"), record.get("unixReviewTime"),
                       record.get("overall"))


def yelp_interaction(record):
    return interaction(record.get("user_id"), record.get("business_id"), record.get("date"),
                       record.get("stars"))


def amazon_meta(record):
    asin = clean_id(record.get("asin"))
    return None if asin is None else (asin, record)


def yelp_business(record):
    business = clean_id(record.get("business_id"))
    city = record.get("city")
    return None if business is None or not isinstance(city, str) else (business, record)


def amazon_texts(record):
    """Item row fields of an Amazon meta record (2018 'category' or 2014 'categories')."""
    return {"title": clean_text(record.get("title")),
            "description": clean_text(record.get("description")),
            "brand": clean_text(record.get("brand")),
            "categories": clean_text(record.get("category", record.get("categories")), sep=", ")}


def yelp_texts(record):
    """Item row fields of a Yelp business: title = name, categories as given ('A, B' or a list)."""
    return {"title": clean_text(record.get("name")),
            "categories": clean_text(record.get("categories"), sep=", ")}


def with_title(item, texts, cleaning):
    """The text model needs some text: an empty title falls back to brand + categories, then to
    the item id; both fallbacks are counted."""
    if texts.get("title"):
        return texts
    fallback = ", ".join(t for t in (texts.get("brand"), texts.get("categories")) if t)
    key = "title_from_brand_categories" if fallback else "title_from_item_id"
    cleaning[key] += 1
    return {**texts, "title": fallback or item}


# ---------------------------------------------------------------------------------------------
# Interactions


class Interactions:
    """Compact columns while streaming: ids interned to ints, times and ratings as doubles."""

    def __init__(self):
        self.users, self.items = {}, {}
        self.user, self.item = array("q"), array("q")
        self.time, self.rating = array("d"), array("d")

    def add(self, user, item, time, rating):
        self.user.append(self.users.setdefault(user, len(self.users)))
        self.item.append(self.items.setdefault(item, len(self.items)))
        self.time.append(time)
        self.rating.append(rating)

    def frame(self):
        users, items = pd.Index(list(self.users), dtype=object), pd.Index(list(self.items), dtype=object)
        return pd.DataFrame({"user_id": users.take(np.asarray(self.user)),
                             "item_id": items.take(np.asarray(self.item)),
                             "rating": self.rating, "timestamp": self.time})


def read_interactions(path, parse, skipped, keep_item=None):
    interactions = Interactions()
    for user, item, time, rating in iter_records(path, parse, skipped):
        if keep_item is None or keep_item(item):
            interactions.add(user, item, time, rating)
    return interactions.frame()


def kcore(df, min_inter):
    """Keep users and items with at least ``min_inter`` rows, repeated until nothing changes
    (removing a user can push an item below the threshold and vice versa).
    Returns the filtered frame and the number of rounds that removed rows."""
    rounds = 0
    while True:
        keep = ((df.groupby("user_id")["user_id"].transform("size") >= min_inter)
                & (df.groupby("item_id")["item_id"].transform("size") >= min_inter))
        if keep.all():
            return df, rounds
        df, rounds = df[keep], rounds + 1


def filter_interactions(df, min_inter, cleaning):
    """Drop repeated (user, item, timestamp) rows, then the k-core; sorted by user, time, item."""
    cleaning["interactions_read"] = len(df)
    deduped = df.drop_duplicates(["user_id", "item_id", "timestamp"])
    cleaning["duplicates_dropped"] = len(df) - len(deduped)
    df, cleaning["kcore_rounds"] = kcore(deduped, min_inter)
    if df.empty:
        raise UserError(f"no interactions left after the {min_inter}-core filter; "
                        "check the input files or lower --min_inter.")
    return df.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Statistics


def stats_of(df):
    users, items, n = df["user_id"].nunique(), df["item_id"].nunique(), len(df)
    return {"users": users, "items": items, "interactions": n,
            "avg_seq_len": round(n / users, 4) if users else 0.0,
            "density": round(n / (users * items), 8) if users else 0.0}


def stats_of_atomic(path, min_inter=5):
    """Statistics of an existing .inter file after the same k-core RecBole applies with
    ``user_inter_num_interval``/``item_inter_num_interval: "[min_inter,inf)"``."""
    df = pd.read_csv(path, sep="\t", dtype=str)
    df.columns = [c.split(":")[0] for c in df.columns]
    return stats_of(kcore(df[["user_id", "item_id"]], min_inter)[0])


def format_stats(name, stats):
    rows = [("dataset", name), ("users", f"{stats['users']:,}"), ("items", f"{stats['items']:,}"),
            ("interactions", f"{stats['interactions']:,}"), ("avg seq length", f"{stats['avg_seq_len']:.2f}"),
            ("density", f"{stats['density']:.6f}")]
    return "\n".join(f"{k:<16}{v:>14}" for k, v in rows)


# ---------------------------------------------------------------------------------------------
# Writing


def field(value):
    """A tab-free, newline-free field. One that starts with a double quote is CSV-quoted, because
    RecBole's pandas reader would otherwise take it as the start of a quoted field."""
    if isinstance(value, float):
        value = int(value) if value.is_integer() else value
    value = str(value)
    return '"' + value.replace('"', '""') + '"' if value.startswith('"') else value


def write_atomic(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(map(field, row)) + "\n")


def write_dataset(folder, name, inter, item_header, items, cleaning, inter_header=INTER_HEADER):
    """Write NAME.inter, NAME.item and stats.json into ``folder``, print the summary, return the stats."""
    write_atomic(os.path.join(folder, f"{name}.inter"), inter_header,
                 inter[[h.split(":")[0] for h in inter_header]].itertuples(index=False))
    columns = [h.split(":")[0] for h in item_header[1:]]
    write_atomic(os.path.join(folder, f"{name}.item"), item_header,
                 ([item] + [texts[c] for c in columns] for item, texts in sorted(items.items())))
    stats = {**stats_of(inter), "cleaning": cleaning}
    with open(os.path.join(folder, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    print("cleaning: " + json.dumps(cleaning))
    print(format_stats(name, stats))
    print(f"written: {folder}")
    return stats


# ---------------------------------------------------------------------------------------------
# Pipelines


def prepare_amazon(reviews, meta, name, out, min_inter=5):
    """Amazon 2018 reviews + metadata -> NAME.inter / NAME.item (items without metadata keep
    their interactions; their title is the asin)."""
    check_input(reviews, "amazon-reviews")
    check_input(meta, "amazon-meta")
    folder = check_output(out, name)
    cleaning = {"malformed_lines": {}, "items_without_meta": 0,
                "title_from_brand_categories": 0, "title_from_item_id": 0}
    inter = filter_interactions(read_interactions(reviews, amazon_interaction, cleaning["malformed_lines"]),
                                min_inter, cleaning)
    needed = set(inter["item_id"])
    texts = {}
    for asin, record in iter_records(meta, amazon_meta, cleaning["malformed_lines"]):
        if asin in needed and asin not in texts:  # the 2018 meta files repeat some asins
            texts[asin] = amazon_texts(record)
    empty = dict.fromkeys(["title", "description", "brand", "categories"], "")
    cleaning["items_without_meta"] = len(needed - texts.keys())
    items = {item: with_title(item, texts.get(item, empty), cleaning) for item in needed}
    return write_dataset(folder, name, inter, AMAZON_ITEM_HEADER, items, cleaning)


def prepare_yelp(business, reviews, city, name, out, min_inter=5):
    """Yelp businesses of one city (matched case-insensitively) and their reviews; the city is
    restricted before the k-core filter, as in the FOSTER paper."""
    check_input(business, "yelp-business")
    check_input(reviews, "yelp-reviews")
    folder = check_output(out, name)
    cleaning = {"malformed_lines": {}, "title_from_brand_categories": 0, "title_from_item_id": 0}
    wanted, cities, texts = city.strip().lower(), Counter(), {}
    for business_id, record in iter_records(business, yelp_business, cleaning["malformed_lines"]):
        cities[record["city"].strip()] += 1
        if record["city"].strip().lower() == wanted:
            texts.setdefault(business_id, yelp_texts(record))
    if not texts:
        common = ", ".join(c for c, _ in cities.most_common(5))
        raise UserError(f"--city {city!r}: no business in {business}; most frequent cities: {common}.")
    cleaning["city_businesses"] = len(texts)
    inter = filter_interactions(read_interactions(reviews, yelp_interaction, cleaning["malformed_lines"],
                                                  keep_item=texts.__contains__), min_inter, cleaning)
    items = {item: with_title(item, texts[item], cleaning) for item in set(inter["item_id"])}
    return write_dataset(folder, name, inter, YELP_ITEM_HEADER, items, cleaning)


# ---------------------------------------------------------------------------------------------
# SeqRec Benchmark archives (Tiny-Snow/SeqRecBenchmark-Datasets, data/<name>/proc.zip)

# The archives hold pandas pickles, and unpickling calls whatever a pickle names: only the globals
# that a plain DataFrame of ints, lists and strings needs are allowed (the "Restricting Globals"
# recipe of the pickle docs). numpy 2 writes numpy._core, numpy 1 numpy.core; both are listed.
SEQREC_GLOBALS = {("builtins", "slice"), ("numpy", "dtype"), ("numpy", "ndarray")} | {
    (f"numpy.{core}.{module}", name) for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
} | {
    ("pandas._libs.internals", "_unpickle_block"), ("pandas.core.frame", "DataFrame"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"), ("pandas.core.internals.managers", "BlockManager"),
}
SEQREC_COLUMNS = {"user2item.pkl": ("UserID", "ItemID", "Timestamp"), "item2title.pkl": ("ItemID", "Title")}


class FrameUnpickler(pickle.Unpickler):
    """Unpickles a plain DataFrame and refuses any other callable the file names."""

    def find_class(self, module, name):
        if (module, name) not in SEQREC_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a plain DataFrame does not need")
        try:
            return super().find_class(module, name)
        except ImportError:  # a numpy 2 pickle read with numpy 1 (numpy._core.numeric is missing there)
            if not module.startswith("numpy._core."):
                raise
            return super().find_class(module.replace("numpy._core.", "numpy.core.", 1), name)


def read_seqrec_frame(archive, member):
    """One DataFrame of a proc.zip (members matched by file name, any folder) or of its extracted
    folder, checked for the columns the benchmark's README documents."""
    where = f"{archive}: {member}"
    if os.path.isdir(archive):
        path = os.path.join(archive, member)
        if not os.path.isfile(path):
            raise UserError(f"{archive}: has no {member}; expected the extracted proc folder "
                            "(user2item.pkl, item2title.pkl; datasets without titles have no item2title.pkl).")
        with open(path, "rb") as f:
            data = f.read()
    else:
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if os.path.basename(n) == member]
            if not names:
                raise UserError(f"{archive}: has no {member} (it holds {sorted(z.namelist())[:6]}); "
                                "datasets without titles have no item2title.pkl.")
            data = z.read(names[0])
    try:
        frame = FrameUnpickler(io.BytesIO(data)).load()
    except Exception as error:  # any failure of a foreign pickle is a bad input, never a traceback
        raise UserError(f"{where}: not loaded as a plain pandas DataFrame ({type(error).__name__}: {error}).") from None
    columns = SEQREC_COLUMNS[member]
    if not isinstance(frame, pd.DataFrame) or not set(columns) <= set(frame.columns):
        found = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise UserError(f"{where}: holds {found}; expected a DataFrame with columns {list(columns)}.")
    return frame


def check_seqrec_archive(archive):
    if not os.path.exists(archive):
        raise UserError(f"{archive}: not found; expected a SeqRec Benchmark proc.zip or its extracted folder.")
    if not os.path.isdir(archive) and not zipfile.is_zipfile(archive):
        raise UserError(f"{archive}: is neither a zip file nor a folder; expected a SeqRec Benchmark "
                        "proc.zip (download it whole, not a Git LFS pointer) or its extracted folder.")


def _plain(value):
    """A numpy scalar as the Python value (ids may be stored either way)."""
    return value.item() if isinstance(value, np.generic) else value


def seqrec_interactions(user2item, skipped):
    """Rows of the per-user lists (ItemID and Timestamp of equal length); a user row whose lists
    do not match counts as malformed, and so does any single invalid (item, time)."""
    interactions = Interactions()
    for user, items, times in tqdm(user2item[["UserID", "ItemID", "Timestamp"]].itertuples(index=False),
                                   total=len(user2item), desc="user2item.pkl", unit="user"):
        if not hasattr(items, "__len__") or not hasattr(times, "__len__") or len(items) != len(times):
            skipped["user2item.pkl"] += 1
            continue
        for item, time in zip(items, times):
            row = interaction(_plain(user), _plain(item), _plain(time), 0.0)
            if row is None:
                skipped["user2item.pkl"] += 1
            else:
                interactions.add(*row)
    return interactions.frame()


def prepare_seqrec(archive, name, out, min_inter=5):
    """A SeqRec Benchmark dataset (per-user item/time lists + item titles, ids from 100) -> NAME.inter
    (no rating column: the archives keep none) / NAME.item (title). The archives are 5-cores
    already; the same deduplication and k-core run anyway, so ``--min_inter`` can tighten it."""
    check_seqrec_archive(archive)
    user2item = read_seqrec_frame(archive, "user2item.pkl")
    item2title = read_seqrec_frame(archive, "item2title.pkl")
    folder = check_output(out, name)
    cleaning = {"malformed_lines": {"user2item.pkl": 0}, "items_without_title_row": 0,
                "title_from_brand_categories": 0, "title_from_item_id": 0}
    inter = filter_interactions(seqrec_interactions(user2item, cleaning["malformed_lines"]), min_inter, cleaning)
    needed = set(inter["item_id"])
    texts = {}
    for item, title in item2title[["ItemID", "Title"]].itertuples(index=False):
        item = clean_id(_plain(item))
        if item in needed and item not in texts:
            texts[item] = {"title": clean_text(title)}
    cleaning["items_without_title_row"] = len(needed - texts.keys())
    items = {item: with_title(item, texts.get(item, {"title": ""}), cleaning) for item in needed}
    return write_dataset(folder, name, inter, SEQREC_ITEM_HEADER, items, cleaning, SEQREC_INTER_HEADER)


# ---------------------------------------------------------------------------------------------
# Command line


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    amazon = sub.add_parser("amazon", help="Amazon Reviews 2018 (Ni et al. 2019) reviews + metadata")
    amazon.add_argument("--reviews", required=True, help="e.g. Video_Games.json.gz")
    amazon.add_argument("--meta", required=True, help="e.g. meta_Video_Games.json.gz")
    amazon.add_argument("--name", required=True, help="dataset name, e.g. amazon-games")
    yelp = sub.add_parser("yelp", help="Yelp Open Dataset, one city")
    yelp.add_argument("--business", required=True, help="yelp_academic_dataset_business.json")
    yelp.add_argument("--reviews", required=True, help="yelp_academic_dataset_review.json")
    yelp.add_argument("--city", default="Nashville", help="case-insensitive (default: Nashville)")
    yelp.add_argument("--name", default="yelp")
    seqrec = sub.add_parser("seqrec", help="SeqRec Benchmark archive (Tiny-Snow/SeqRecBenchmark-Datasets proc.zip)")
    seqrec.add_argument("--archive", required=True, help="data/<name>/proc.zip or its extracted folder")
    seqrec.add_argument("--name", required=True, help="dataset name, e.g. amazon-beauty")
    for command in (amazon, yelp, seqrec):
        command.add_argument("--out", required=True, help="writes OUT/NAME/NAME.inter|.item|stats.json")
    stats = sub.add_parser("stats", help="statistics of an existing .inter file after the k-core")
    stats.add_argument("inter")
    for command in (amazon, yelp, seqrec, stats):
        command.add_argument("--min_inter", type=int, default=5, help="k of the k-core (default 5)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.command == "amazon":
            prepare_amazon(args.reviews, args.meta, args.name, args.out, args.min_inter)
        elif args.command == "yelp":
            prepare_yelp(args.business, args.reviews, args.city, args.name, args.out, args.min_inter)
        elif args.command == "seqrec":
            prepare_seqrec(args.archive, args.name, args.out, args.min_inter)
        else:
            if not os.path.isfile(args.inter):
                raise UserError(f"{args.inter}: file not found; expected a RecBole .inter file.")
            print(json.dumps(stats_of_atomic(args.inter, args.min_inter)))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
