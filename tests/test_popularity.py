"""--method=popularity: a model-free list whose metric is RecBole's, checked against a hand count."""

import math
import os
from collections import Counter

import numpy as np
import pytest

from recbole_foster.methods.popularity import read_list, top_items
from recbole_foster.run import main, run
from tests.toy_data import as_argv, assert_one_error_line, toy_options


def _toy_users(data_root):
    """Each toy user's items in time order, from the raw atomic file."""
    users = {}
    with open(os.path.join(data_root, "toy", "toy.inter")) as f:
        next(f)
        for line in f:
            user, item, time = line.rstrip("\n").split("\t")
            users.setdefault(user, []).append((float(time), item))
    return {u: [i for _, i in sorted(events)] for u, events in users.items()}


def _hand_ndcg(ranked, targets, k=10):
    """Mean NDCG@k of one ranked list for one held-out item per user (one relevant item)."""
    gains = [1 / math.log2(ranked.index(t) + 2) if t in ranked[:k] else 0.0 for t in targets]
    return float(np.mean(gains))


def test_top_items_breaks_ties_by_id_and_skips_padding():
    assert top_items([9, 3, 5, 5, 1], 3).tolist() == [2, 3, 1]


@pytest.mark.parametrize("train_window", [True, False])  # one training row per window, or RecBole's per prefix
def test_popularity_equals_a_hand_computed_ndcg(train_window, toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="popularity", popularity_recent_share=1.0,
                          popularity_list_size=25, train_window=train_window)
    results = run(as_argv(options))
    users = _toy_users(toy_data_root)
    # leave-one-out: last item test, second-to-last valid, the rest is training data
    counts = Counter(i for seq in users.values() for i in seq[:-2])
    header, ids = read_list(results["set_file"])
    assert header["recent_share"] == 1.0 and len(ids) == 25
    assert results["artifact_bytes"] == os.path.getsize(results["set_file"]) == 25 * 2 + header_bytes(results)  # toy ids fit 2 bytes
    # the stored list is the hand count's order (ties in any order among equal counts)
    from recbole_foster.run import prepare

    ctx = prepare(as_argv_dict({**options, "output_dir": str(tmp_path / "probe")}))
    tokens = ctx.dataset.field2id_token[ctx.dataset.iid_field]
    listed = [tokens[i] for i in ids]
    assert [counts[t] for t in listed] == sorted((counts[t] for t in listed), reverse=True)
    assert counts[listed[-1]] >= max(c for t, c in counts.items() if t not in listed)
    assert results["valid"]["ndcg@10"] == pytest.approx(_hand_ndcg(listed, [s[-2] for s in users.values()]), abs=1e-4)
    assert results["test"]["ndcg@10"] == pytest.approx(_hand_ndcg(listed, [s[-1] for s in users.values()]), abs=1e-4)
    assert results["family"] == "self-contained" and results["n_sequences"] is None


def header_bytes(results):
    return results["artifact_bytes_parts"]["header"]


def as_argv_dict(options):
    from recbole_foster.cli import parse_args

    return parse_args(as_argv(options))


def test_a_grid_of_shares_is_chosen_on_validation(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="popularity",
                          popularity_recent_share="[0.2,1.0]")
    results = run(as_argv(options))
    grid = {g["share"]: g["valid_ndcg@10"] for g in results["share_grid"]}
    assert set(grid) == {0.2, 1.0}
    assert results["recent_share"] == max(grid, key=lambda s: (grid[s], -s))
    assert results["valid"]["ndcg@10"] == max(grid.values())


@pytest.mark.parametrize("key,value,pattern", [("popularity_list_size", 3, "popularity_list_size"),
                                               ("popularity_recent_share", 1.5, "popularity_recent_share")])
def test_bad_settings_are_one_error_line(key, value, pattern, toy_data_root, tiny_bert_dir, tmp_path, capsys):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="popularity", **{key: value})
    assert main(as_argv(options)) == 2
    assert_one_error_line(capsys.readouterr().err, pattern)
