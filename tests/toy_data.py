"""A tiny RecBole atomic dataset for tests: sequential structure the model can learn quickly."""

import os

import numpy as np

WORDS = "red blue green fast slow big small space war star game quest hero dark light city night day".split()


def make_toy_dataset(root, name="toy", n_users=40, n_items=30, seq_len=12, seed=0,
                     empty_title_items=(3,), missing_title_items=(4,), with_item_file=True):
    """Write ``root/name/name.inter`` and ``.item``; users walk item ids in runs (i -> i+1).

    Item 3 gets an empty title and item 4 has no title column value at all (NaN in pandas),
    the cases RecBole 1.2.1 mishandles on pandas 3.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(1, n_users + 1):
            start = int(rng.integers(1, n_items + 1))
            for t in range(seq_len):
                item = (start + t - 1) % n_items + 1
                f.write(f"u{u}\ti{item}\t{1000 * u + t}\n")
    if with_item_file:
        with open(os.path.join(folder, f"{name}.item"), "w") as f:
            f.write("item_id:token\ttitle:token_seq\tbrand:token\n")
            for i in range(1, n_items + 1):
                if i in empty_title_items:
                    title = ""
                elif i in missing_title_items:
                    f.write(f"i{i}\t\t\n")
                    continue
                else:
                    title = " ".join(rng.choice(WORDS, size=3)) + f" {i}"
                f.write(f"i{i}\t{title}\tb{i % 3}\n")
    return root


def toy_options(data_root, bert_dir, tmp_path, **overrides):
    """CLI-style options for a fast run on the toy dataset (strings, as from the command line)."""
    options = {
        "dataset": "toy",
        "data_path": str(data_root),
        "text_encoder": str(bert_dir),
        "text_fields": "['title']",
        "text_cache_dir": str(tmp_path / "text_cache"),
        "anchor_dir": str(tmp_path / "anchors"),
        "checkpoint_dir": str(tmp_path / "saved"),
        "output_dir": str(tmp_path / "out"),
        "load_col": "{'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'title']}",
        "hidden_size": "16",
        "inner_size": "32",
        "n_layers": "1",
        "n_heads": "1",
        "epochs": "3",
        "train_batch_size": "64",
        "learning_rate": "0.005",
        "use_gpu": "False",
        "state": "WARNING",
        "n_sampled_items": "8",
        "foster_outer_steps": "6",
        "foster_inner_steps": "2",
        "foster_reset_interval": "3",
        "foster_real_batch_size": "16",
        "foster_dh_pairs": "8",
        "foster_user_rank": "4",
        "foster_time_rank": "4",
        "foster_seq_len": "6",
        "foster_checkpoint_every": "2",
        "distilled_steps": "6",
        "distilled_eval_every": "3",
        "distilled_eval_seeds": "2",
        "n_sequences": "4",
    }
    options.update({k: str(v) for k, v in overrides.items()})
    return options


def assert_one_error_line(err, pattern):
    """A refused run printed exactly one ``error:`` line matching ``pattern`` and no traceback."""
    import re

    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, err
    assert re.search(pattern, error_lines[0]), error_lines[0]


def as_argv(options):
    return [f"--{k}={v}" for k, v in options.items()]
