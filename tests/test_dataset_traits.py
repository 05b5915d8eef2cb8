"""benchmarks/dataset_traits.py: each trait against a direct computation."""

import json
import math
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import dataset_traits  # noqa: E402


def test_interaction_traits_counts_lengths_density_and_top_items():
    # 3 users with 1, 2, 5 interactions over 150 items (top 1% = 2 items): item 0 has 4, item 1 has 2.
    users = np.array([0, 1, 1, 2, 2, 2, 2, 2])
    items = np.array([0, 0, 1, 0, 0, 1, 7, 9])
    traits = dataset_traits.interaction_traits(users, items, n_items=150)
    assert traits["users"] == 3 and traits["items"] == 150 and traits["interactions"] == 8
    assert traits["mean_seq_len"] == 8 / 3 and traits["median_seq_len"] == 2.0
    assert traits["density"] == 8 / (3 * 150)
    assert traits["top1pct_items"] == 2 and traits["top1pct_share"] == 6 / 8


def test_embedding_spread_matches_brute_force():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 6)) + 3.0  # off-centre, as sentence embeddings are
    spread = dataset_traits.embedding_spread(table, sample=20, seed=1)
    rows = np.sort(np.random.default_rng(1).choice(50, size=20, replace=False))
    x = table[rows] / np.linalg.norm(table[rows], axis=1, keepdims=True)
    cos = x @ x.T
    assert math.isclose(spread["mean_cosine_distance"], 1 - cos[~np.eye(20, dtype=bool)].mean(), rel_tol=1e-12)
    assert spread["sampled_items"] == 20 and spread["dim"] == 6
    assert 1.0 < spread["effective_rank"] <= 6.0
    # identical directions: no spread; k orthogonal equal-norm centred directions: effective rank k
    same = dataset_traits.embedding_spread(np.tile([[1.0, 2.0, 3.0]], (10, 1)) * np.arange(1, 11)[:, None], 10, 0)
    assert abs(same["mean_cosine_distance"]) < 1e-12
    eye = np.vstack([np.eye(4), -np.eye(4)])
    assert math.isclose(dataset_traits.embedding_spread(eye, 8, 0)["effective_rank"], 4.0, rel_tol=1e-9)


def test_traits_of_the_toy_dataset_as_a_run_loads_it(toy_data_root, tiny_bert_dir, tmp_path):
    argv = ["--datasets=toy=" + str(toy_data_root), "--sample=5", f"--out={tmp_path / 'traits'}",
            f"--text_encoder={tiny_bert_dir}", "--text_fields=['title']", f"--text_cache_dir={tmp_path / 'cache'}",
            "--load_col={'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'title']}",
            f"--checkpoint_dir={tmp_path / 'saved'}", "--use_gpu=False", "--state=WARNING"]
    dataset_traits.main(argv)
    result = json.loads((tmp_path / "traits" / "dataset-traits.json").read_text())
    assert result["command"].startswith("python benchmarks/dataset_traits.py --datasets=toy=")
    (row,) = result["datasets"]
    inter = pd.read_csv(os.path.join(str(toy_data_root), "toy", "toy.inter"), sep="\t")
    per_user = inter.groupby(inter.columns[0]).size()
    assert (row["users"], row["interactions"]) == (len(per_user), len(inter))
    assert row["mean_seq_len"] == per_user.mean() and row["median_seq_len"] == per_user.median()
    assert row["sampled_items"] == 5 and 0.0 <= row["mean_cosine_distance"] <= 2.0
    assert (tmp_path / "traits" / "dataset-traits.md").read_text().count("\n| toy |") == 1
