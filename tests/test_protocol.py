"""eval_protocol: RecBole's leave-one-out (loo, unchanged) and the paper's global_temporal split."""

import os
from collections import defaultdict

import numpy as np
import pytest
import torch

from recbole_foster import FosterConfig
from recbole_foster.dataset import DatasetError, WindowedSequentialDataset, create_dataset
from recbole_foster.dataset.protocol import (
    GlobalTemporalSequentialDataset,
    WindowedGlobalTemporalSequentialDataset,
    global_cut_points,
    split_rows_by_time,
)
from recbole_foster.run import run
from tests.toy_data import WORDS, as_argv, toy_options

MAX_LEN = 4  # short, so that histories get truncated


def make_temporal_dataset(root, name="gt", n_users=30, n_items=25, seed=0):
    """Interleaved timestamps across users (unlike tests/toy_data.py, where users follow each other).

    Every regular user has an interaction at time 800, so the 80% quantile falls on a timestamp
    (tie at the cut). Timestamps are distinct within a user. Two extra users start after the
    first cut: their first interaction has an empty history and must not become a target.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    rows = []
    for u in range(1, n_users + 1):
        n = int(rng.integers(3, 15))
        times = sorted(set(rng.choice([t for t in range(0, 1000, 10) if t != 800], size=n, replace=False)) | {800})
        rows += [(f"u{u}", f"i{int(rng.integers(1, n_items + 1))}", int(t)) for t in times]
    rows += [("late", "i1", 950), ("late", "i2", 960), ("late", "i3", 975)]
    rows += [("newcomer", "i5", 805), ("newcomer", "i6", 815), ("newcomer", "i7", 990)]
    order = rng.permutation(len(rows))  # file order must not matter
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for k in order:
            f.write("%s\t%s\t%d\n" % rows[k])
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\ttitle:token_seq\n")
        for i in range(1, n_items + 1):
            f.write(f"i{i}\t{' '.join(rng.choice(WORDS, size=3))} {i}\n")
    return rows


@pytest.fixture(scope="module")
def temporal(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("temporal"))
    return root, make_temporal_dataset(root)


def config_for(root, **options):
    base = {
        "data_path": root, "state": "WARNING", "use_gpu": False, "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
    }
    base.update(options)
    return FosterConfig(model="TextSASRec", dataset=options.pop("dataset", "gt"), config_dict=base)


def build(root, **options):
    config = config_for(root, **options)
    dataset = create_dataset(config)
    return config, dataset, dataset.build()


def decoded(split):
    """Per row: (user, target item, target time, [history items], [history times])."""
    feat, ds = split.inter_feat, split
    users = ds.field2id_token[ds.uid_field]
    items = ds.field2id_token[ds.iid_field]
    out = []
    for r in range(len(feat)):
        n = int(feat[ds.item_list_length_field][r])
        out.append((
            users[int(feat[ds.uid_field][r])],
            items[int(feat[ds.iid_field][r])],
            float(feat[ds.time_field][r]),
            [items[int(i)] for i in feat[ds.item_id_list_field][r, :n]],
            [float(t) for t in feat[ds.time_field + ds.config["LIST_SUFFIX"]][r, :n]],
        ))
    return out


def user_sequences(rows):
    seqs = defaultdict(list)
    for user, item, t in rows:
        seqs[user].append((t, item))
    return {u: sorted(s) for u, s in seqs.items()}


def expected_targets(rows, low, high):
    """(user, item, time) of every interaction in [low, high) that has an earlier one of its user."""
    return sorted(
        (u, item, float(t)) for u, seq in user_sequences(rows).items()
        for k, (t, item) in enumerate(seq) if k > 0 and low <= t < high
    )


def test_cut_points_are_the_quantiles_of_all_timestamps(temporal):
    root, rows = temporal
    _, dataset, _ = build(root, eval_protocol="global_temporal")
    times = np.array([t for _, _, t in rows], dtype=np.float64)
    assert dataset.cut_points == tuple(np.quantile(times, [0.8, 0.9]))
    assert global_cut_points(times) == tuple(np.quantile(times, [0.8, 0.9]))
    assert dataset.cut_points[0] == 800.0  # the fixture puts a timestamp exactly on t1


def test_targets_are_exactly_the_interactions_of_each_period(temporal):
    root, rows = temporal
    _, dataset, (train, valid, test) = build(root, eval_protocol="global_temporal", train_window=False)
    t1, t2 = dataset.cut_points
    key = lambda r: (r[0], r[1], r[2])  # noqa: E731
    assert sorted(map(key, decoded(train))) == expected_targets(rows, -np.inf, t1)
    assert sorted(map(key, decoded(valid))) == expected_targets(rows, t1, t2)
    assert sorted(map(key, decoded(test))) == expected_targets(rows, t2, np.inf)
    # tie rule: an interaction stamped exactly t1 is a validation target, never training
    at_t1 = [r for r in decoded(valid) if r[2] == t1]
    assert len(at_t1) >= 25 and not any(r[2] == t1 for r in decoded(train))
    # users whose first interaction comes after t1: that one has no history, so it is no target
    assert ("newcomer", "i5", 805.0) not in map(key, decoded(valid))
    assert ("late", "i1", 950.0) not in map(key, decoded(test))
    assert ("late", "i2", 960.0) in map(key, decoded(test))


def test_no_interaction_at_or_after_t1_reaches_training(temporal):
    root, _ = temporal
    for window in (False, True):
        _, dataset, (train, _, _) = build(root, eval_protocol="global_temporal", train_window=window)
        t1 = dataset.cut_points[0]
        samples = decoded(train)
        assert samples
        for _, _, t, _, hist_times in samples:
            assert t < t1 and all(h < t1 for h in hist_times)


def test_windowed_training_covers_each_pre_t1_target_exactly_once(temporal):
    root, rows = temporal
    _, dataset, (train, _, _) = build(root, eval_protocol="global_temporal")
    assert type(dataset) is WindowedGlobalTemporalSequentialDataset
    t1 = dataset.cut_points[0]
    targets = []
    for user, item, t, hist, hist_times in decoded(train):
        # every position predicts the next item: history items after the first, then the target
        targets += [(user, i, ht) for i, ht in zip(hist[1:], hist_times[1:])] + [(user, item, t)]
    assert sorted(targets) == expected_targets(rows, -np.inf, t1)
    _, plain, (unwindowed, _, _) = build(root, eval_protocol="global_temporal", train_window=False)
    assert type(plain) is GlobalTemporalSequentialDataset
    assert len(train) < len(unwindowed)


def test_eval_histories_are_all_earlier_interactions_truncated(temporal):
    root, rows = temporal
    _, _, (_, valid, test) = build(root, eval_protocol="global_temporal")
    seqs = user_sequences(rows)
    for split in (valid, test):
        for user, item, t, hist, hist_times in decoded(split):
            earlier = [(ht, i) for ht, i in seqs[user] if ht < t]
            assert earlier, "a target with an empty history was kept"
            assert all(ht < t for ht in hist_times)  # strictly earlier than the target
            assert hist == [i for _, i in earlier][-MAX_LEN:]  # all earlier ones, last MAX_LEN
            assert hist_times[-1] == earlier[-1][0]  # ends with the most recent earlier one
    # a test history reaches into the validation period (t1 = 800 in this fixture)
    assert any(ht >= 800.0 for *_, hts in decoded(test) for ht in hts)


def test_eval_args_split_is_ignored_and_pinned(temporal):
    root, _ = temporal
    config, _, (tr, va, te) = build(root, eval_protocol="global_temporal")
    assert config["eval_args"]["split"] == {"global_temporal": [0.8, 0.1, 0.1]}
    _, _, (tr2, va2, te2) = build(root, eval_protocol="global_temporal",
                                  eval_args={"split": {"RS": [0.5, 0.25, 0.25]}, "order": "RO",
                                             "group_by": "user", "mode": "full"})
    for a, b in ((tr, tr2), (va, va2), (te, te2)):
        assert sorted(decoded(a)) == sorted(decoded(b))


def test_loo_is_recbole_leave_one_out_unchanged(temporal):
    root, rows = temporal
    config, dataset, (train, valid, test) = build(root, train_window=False)  # eval_protocol defaults to loo
    assert config["eval_protocol"] == "loo" and config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert not isinstance(dataset, GlobalTemporalSequentialDataset)
    key = lambda r: (r[0], r[1], r[2])  # noqa: E731
    # RecBole's LS leaves out of each user's samples (all interactions but the first) the last
    # one for test and the one before for valid, keeping at least one training sample
    seqs = user_sequences(rows)
    assert sorted(map(key, decoded(test))) == sorted(
        (u, s[-1][1], float(s[-1][0])) for u, s in seqs.items() if len(s) > 2)
    assert sorted(map(key, decoded(valid))) == sorted(
        (u, s[-2][1], float(s[-2][0])) for u, s in seqs.items() if len(s) > 3)
    # identical to RecBole's own SequentialDataset with LS
    from recbole.data.dataset import SequentialDataset

    reference = SequentialDataset(config_for(root)).build()
    for ours, theirs in zip((train, valid, test), reference):
        assert ours.inter_feat.columns == theirs.inter_feat.columns
        for field in ours.inter_feat.columns:
            assert torch.equal(ours.inter_feat[field], theirs.inter_feat[field])
    _, windowed, _ = build(root)  # default train_window: the existing windowed class, as before
    assert type(windowed) is WindowedSequentialDataset


def test_split_rows_by_time_tie_rule_and_grouping():
    uid = np.array([2, 1, 2, 1, 3, 2])
    times = np.array([1.0, 2.0, 5.0, 5.0, 9.0, 7.0])
    train, valid, test = split_rows_by_time(uid, times, 5.0, 7.0)
    assert train.tolist() == [0, 1] and valid.tolist() == [2, 3] and test.tolist() == [5, 4]


def test_bad_protocol_and_missing_timestamp(temporal):
    root, _ = temporal
    with pytest.raises(ValueError, match="'loo'.*'global_temporal'"):
        create_dataset(config_for(root, eval_protocol="temporal"))
    with pytest.raises(DatasetError, match="timestamp"):
        create_dataset(config_for(root, eval_protocol="global_temporal",
                                  load_col={"inter": ["user_id", "item_id"], "item": ["item_id", "title"]}))


@pytest.mark.slow
def test_run_full_end_to_end_under_global_temporal(temporal, tiny_bert_dir, tmp_path):
    root, _ = temporal
    options = toy_options(root, tiny_bert_dir, tmp_path, dataset="gt", method="full",
                          eval_protocol="global_temporal", epochs=2)
    results = run(as_argv(options))
    assert {"recall@10", "ndcg@10"} <= set(results["test"])
    assert all(np.isfinite(v) for v in results["test"].values())
    assert results["config"]["eval_protocol"] == "global_temporal"
    assert results["config"]["eval_args"]["split"] == {"global_temporal": [0.8, 0.1, 0.1]}
    training = results["training"]  # 2 epochs, RecBole's default patience 10: the epoch cap ended it
    assert (training["epochs_trained"], training["epoch_cap"], training["stopped_by"]) == (2, 2, "epoch cap")
