"""``--method=popularity``: recent best sellers, a floor that needs no model, no seed and no text.

Items are ranked by how often they occur in the most recent ``popularity_recent_share`` of the
interactions of RecBole's training split (ordered by timestamp; histories and targets of the
training rows, each interaction once). The top ``popularity_list_size``
item ids are the whole artifact: a one-line JSON header (format, dataset, catalog fingerprint,
share) and the ids as little-endian int32, so its bytes are 4 per item plus the header. Every user
gets the same list, scored through :class:`~recbole_foster.scoring.FullSortScorer` (RecBole's
full ranking, masking and metrics). A list of shares is a grid: each is judged on validation and
the best validation NDCG@10 is kept; only then is its test read.
"""

import json
import os

import numpy as np
import torch

from recbole_foster.cli import CLIError
from recbole_foster.distill.artifacts import catalog_fingerprint
from recbole_foster.methods.base import SELF_CONTAINED, Method
from recbole_foster.methods.selection import PROPERTIES
from recbole_foster.real_run import find_real_run
from recbole_foster.scoring import scorer_for, supports

LIST_FORMAT = "recbole_foster.popularity/1"
LIST_FILE = "popularity.list"


def shares_of(config):
    """The configured share(s) as a list of fractions in (0, 1]; CLIError otherwise."""
    value = config["popularity_recent_share"]
    shares = list(value) if isinstance(value, (list, tuple)) else [value]
    if not shares or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1 for s in shares):
        raise CLIError(f"--popularity_recent_share must be a fraction in (0, 1] or a list of them, got {value!r}.")
    return [float(s) for s in shares]


def training_interactions(dataset):
    """``(timestamps, item ids)`` of every interaction in a sequential training split.

    A training row is a target with its history (RecBole's one row per prefix, or this package's
    one row per window); the union of the histories and targets is the training data, each
    interaction counted once (rows are deduplicated on (user, timestamp, item))."""
    feat = dataset.inter_feat
    items = feat[dataset.iid_field + dataset.config["LIST_SUFFIX"]].numpy()
    times = feat[dataset.time_field + dataset.config["LIST_SUFFIX"]].numpy()
    length = feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    users = np.broadcast_to(feat[dataset.uid_field].numpy()[:, None], items.shape)
    inside = np.arange(items.shape[1])[None, :] < length[:, None]
    rows = np.concatenate([
        np.stack([users[inside], times[inside], items[inside]], axis=1).astype(np.float64),
        np.stack([feat[dataset.uid_field].numpy(), feat[dataset.time_field].numpy(),
                  feat[dataset.iid_field].numpy()], axis=1).astype(np.float64)])
    rows = np.unique(rows, axis=0)
    return rows[:, 1], rows[:, 2].astype(np.int64)


def recent_counts(times, items, share, n_items):
    """(n_items,) counts of each item in the most recent ``share`` of the training interactions
    (``times``, ``items``: :func:`training_interactions`)."""
    keep = max(1, int(np.ceil(share * len(items))))
    recent = np.argsort(times, kind="stable")[len(items) - keep:]
    return np.bincount(items[recent], minlength=n_items)


def top_items(counts, size):
    """The ``size`` most counted item ids (ties: smaller id first), never the padding id 0."""
    counts = np.asarray(counts).copy()
    counts[0] = -1
    order = np.lexsort((np.arange(len(counts)), -counts))  # last key first: count desc, then id asc
    return order[: min(size, len(counts) - 1)]


def list_scores(items, n_items):
    """(n_items,) scores that rank ``items`` in order above every other item."""
    scores = torch.zeros(n_items)
    scores[torch.as_tensor(items, dtype=torch.long)] = torch.arange(len(items), 0, -1, dtype=torch.float)
    return scores


def evaluate_list(config, data, items, n_items):
    """RecBole's full-ranking metrics of recommending ``items`` (in order) to every user of ``data``."""
    scorer = scorer_for(config, data)
    scores = list_scores(items, n_items)
    return {k: float(v) for k, v in
            scorer.evaluate_scores(lambda interaction: scores.expand(len(interaction), -1).clone()).items()}


def save_list(path, items, header):
    """``header`` as one JSON line, then the ids as little-endian integers of ``id_bytes`` bytes (2
    while the catalog has under 32,768 items, else 4); returns the file's bytes."""
    items = np.asarray(items)
    id_bytes = 2 if items.size == 0 or items.max() <= np.iinfo(np.int16).max else 4
    with open(path + ".tmp", "wb") as f:
        f.write(json.dumps({"format": LIST_FORMAT, **header, "id_bytes": id_bytes}).encode("utf-8") + b"\n")
        f.write(items.astype(f"<i{id_bytes}").tobytes())
    os.replace(path + ".tmp", path)
    return os.path.getsize(path)


def read_list(path):
    """``(header, item ids)`` of a saved list."""
    with open(path, "rb") as f:
        line, rest = f.read().split(b"\n", 1)
    header = json.loads(line)
    return header, np.frombuffer(rest, dtype=f"<i{header.get('id_bytes', 4)}").astype(np.int64)


def list_bytes_parts(path):
    """``{"header", "item_ids"}``: how a saved list's bytes split (``artifact_bytes_parts``)."""
    header, items = read_list(path)
    ids = header.get("id_bytes", 4) * len(items)
    return {"header": os.path.getsize(path) - ids, "item_ids": ids}


def best_recent_list(ctx):
    """``(best, grid)``: the top ``popularity_list_size`` items for each share of
    ``popularity_recent_share``, each judged on validation; ``best`` (``share``, ``items``,
    ``valid``) has the highest validation NDCG@10 (first on ties: the share listed first)."""
    config, size = ctx.config, int(ctx.config["popularity_list_size"])
    train, n_items = ctx.train_data.dataset, ctx.dataset.item_num
    times, interacted = training_interactions(train)  # once for the whole grid
    grid = []
    for share in shares_of(config):
        items = top_items(recent_counts(times, interacted, share, train.item_num), size)
        grid.append({"share": share, "items": items, "valid": evaluate_list(config, ctx.valid_data, items, n_items)})
    return max(grid, key=lambda g: g["valid"]["ndcg@10"]), grid


def save_best_list(ctx, path, best):
    """Save ``best`` (:func:`best_recent_list`) with its header; returns the file's bytes."""
    header = {"dataset": ctx.config["dataset"], "item_catalog": catalog_fingerprint(ctx.dataset)["sha256"],
              "recent_share": best["share"], "n_items": len(best["items"])}
    return save_list(path, best["items"], header)


class Popularity(Method):
    name, label = "popularity", "Popularity"
    summary = "the most recent best sellers, one list for every user (no model, no seed)"
    small_set, models, uses_teacher, exports = False, "any", False, False
    config_file = os.path.join(PROPERTIES, "popularity.yaml")

    def needs_teacher(self, config):
        return False

    def reads_item_text(self, config):
        return False

    def check(self, config):
        shares_of(config)
        size, k = config["popularity_list_size"], max(config["topk"])
        if isinstance(size, bool) or not isinstance(size, int) or size < k:
            raise CLIError(f"--popularity_list_size must be an integer >= max(topk) = {k}, got {size!r}.")
        if not supports(config):
            raise CLIError(f"--method=popularity reports top-k metrics only; metrics {config['metrics']} need more.")

    def check_data(self, ctx):
        if ctx.dataset.time_field is None or ctx.dataset.time_field not in ctx.train_data.dataset.inter_feat:
            from recbole_foster.errors import DatasetError

            raise DatasetError("--method=popularity needs a timestamp column (TIME_FIELD) to find recent interactions.")

    def prepare_inputs(self, ctx):
        """Nothing to train; the real-data run is shown beside it when it is on disk."""
        return {"real_run": find_real_run(ctx), "teacher": None, "saved_set": None}

    def banner_lines(self, ctx):
        return self.label, [self.summary, f"recent shares tried on validation: {shares_of(ctx.config)}"]

    def run(self, ctx):
        config, n_items = ctx.config, ctx.dataset.item_num
        with ctx.timed("select"):
            best, grid = best_recent_list(ctx)
        with ctx.timed("eval"):
            test = evaluate_list(config, ctx.test_data, best["items"], n_items)
        path = os.path.join(ctx.output_dir, LIST_FILE)
        size_bytes = save_best_list(ctx, path, best)
        label = self.label
        return {
            "valid": best["valid"], "test": test,
            "per_seed": [{"seed": None, "valid": best["valid"], "test": test, "steps": 0}], "eval_seeds": [],
            "recent_share": best["share"],
            "share_grid": [{"share": g["share"], "valid_ndcg@10": g["valid"]["ndcg@10"]} for g in grid],
            "popularity_list": [int(i) for i in best["items"][:20]],
            "set_file": path, "family": SELF_CONTAINED, "artifact_bytes": size_bytes,
            "artifact_bytes_parts": list_bytes_parts(path),
            "label_storage": "hard",
            "table": {**({"Full": ctx.real_run.manifest["test"]} if ctx.real_run else {}), label: test},
        }

