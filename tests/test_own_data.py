"""A user's own dataset in RecBole atomic files: columns from the headers, malformed lines, empty texts."""

import os
import re
import shutil

import pytest
import recbole

from recbole_foster.errors import DatasetError
from recbole_foster.run import main, prepare
from tests.toy_data import as_argv, make_toy_dataset, toy_options

ML100K = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def ml100k_copy(root, name="mymovies", n_lines=3000):
    """The first ``n_lines`` interactions of ml-100k and its whole .item file, renamed ``name``."""
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(ML100K, "ml-100k.inter")) as fin, open(os.path.join(folder, f"{name}.inter"), "w") as fout:
        for i, line in enumerate(fin):
            if i > n_lines:
                break
            fout.write(line)
    shutil.copyfile(os.path.join(ML100K, "ml-100k.item"), os.path.join(folder, f"{name}.item"))
    return str(root)


def own_options(root, bert, tmp_path, **overrides):
    """What a user types: dataset, data_path, text fields, protocol; no load_col."""
    options = toy_options(root, bert, tmp_path, dataset="mymovies", method="full",
                          text_fields="['movie_title','class']", eval_protocol="global_temporal", **overrides)
    del options["load_col"]
    return options


def test_ml100k_copy_loads_without_load_col(tiny_bert_dir, tmp_path):
    """The issue's case: RecBole alone fails with '[timestamp] is not exist in interaction'."""
    root = ml100k_copy(tmp_path / "data")
    ctx = prepare(own_options(root, tiny_bert_dir, tmp_path))
    config, dataset = ctx.config, ctx.dataset
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"],
                                  "item": ["item_id", "movie_title", "class"]}
    assert "timestamp" in dataset.inter_feat and "rating" not in dataset.inter_feat
    assert {"movie_title", "class"} <= set(dataset.item_feat.columns)
    assert ctx.train_data.dataset.cut_points is not None  # the global temporal split ran
    assert ctx.input_notes == {"malformed_lines_dropped": {}, "empty_item_texts": 0}
    assert dataset.item_text_embeddings.shape[0] == dataset.item_num


def test_ml100k_copy_with_a_malformed_line_stops_with_its_line_number(tiny_bert_dir, tmp_path, capsys):
    root = ml100k_copy(tmp_path / "data")
    inter = tmp_path / "data" / "mymovies" / "mymovies.inter"
    lines = inter.read_text().splitlines(keepends=True)
    lines[41] = "196\t242\n"  # line 42: rating and timestamp missing
    inter.write_text("".join(lines))
    assert main(as_argv(own_options(root, tiny_bert_dir, tmp_path))) == 2
    err = capsys.readouterr().err
    assert "mymovies.inter has 1 malformed line (not 4 fields like its header): line 42" in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_skip_malformed_drops_the_lines_before_recbole_reads_them(tiny_bert_dir, tmp_path, capsys):
    root = make_toy_dataset(str(tmp_path / "data"), name="broken")
    inter = tmp_path / "data" / "broken" / "broken.inter"
    lines = inter.read_text().splitlines(keepends=True)
    n_interactions = len(lines) - 1
    lines[4] = lines[4].rstrip("\n") + "\t7\n"
    lines[30] = "u3\n"
    inter.write_text("".join(lines))
    options = toy_options(root, tiny_bert_dir, tmp_path, dataset="broken", method="full", skip_malformed="True")
    ctx = prepare(options)
    assert ctx.input_notes["malformed_lines_dropped"] == {"inter": 2}
    err = capsys.readouterr().err
    assert "broken.inter has 2 malformed lines" in err and "lines 5, 31" in err and "Dropped them" in err
    clean = ctx.config["data_path"]
    assert clean.startswith(str(tmp_path / "saved" / "clean_data"))
    assert os.path.islink(os.path.join(clean, "broken.item"))  # files without malformed lines are linked
    with open(os.path.join(clean, "broken.inter")) as f:
        kept = f.read().splitlines()
    assert len(kept) == n_interactions - 1 and "u3" not in kept and all(len(k.split("\t")) == 3 for k in kept)
    assert ctx.dataset.user_num - 1 == 40  # RecBole read the copy: no user or item made of a NaN
    assert prepare(options).config["data_path"] == clean  # the cleaned copy is reused
    assert inter.read_text().count("\n") == n_interactions + 1  # the user's file is untouched


def test_empty_item_texts_are_counted_and_warned_about(toy_data_root, tiny_bert_dir, tmp_path, caplog):
    ctx = prepare(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full"))
    assert ctx.input_notes["empty_item_texts"] == 2  # item 3: empty title; item 4: no value at all
    assert "2 of 30 items have an empty or missing text in text_fields ['title'] (item ids i3, i4)" in caplog.text


def test_no_timestamp_column_is_a_clear_error(tiny_bert_dir, tmp_path):
    root = make_toy_dataset(str(tmp_path / "data"), name="notime")
    inter = tmp_path / "data" / "notime" / "notime.inter"
    rows = [line.split("\t")[:2] for line in inter.read_text().splitlines()]
    inter.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    options = toy_options(root, tiny_bert_dir, tmp_path, dataset="notime", method="full")
    del options["load_col"]
    with pytest.raises(DatasetError, match=r"has no timestamp column 'timestamp' \(TIME_FIELD\).*timestamp:float"):
        prepare(options)


def test_id_column_named_otherwise_says_which_key_to_set(tiny_bert_dir, tmp_path):
    root = make_toy_dataset(str(tmp_path / "data"), name="ids")
    inter = tmp_path / "data" / "ids" / "ids.inter"
    inter.write_text(inter.read_text().replace("user_id:token", "customer:token", 1))
    options = toy_options(root, tiny_bert_dir, tmp_path, dataset="ids", method="full")
    del options["load_col"]
    with pytest.raises(DatasetError, match=r"no column 'user_id' \(USER_ID_FIELD\).*--USER_ID_FIELD="):
        prepare(options)


def test_a_load_col_of_the_user_is_kept(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full",
                          load_col="{'inter': ['user_id', 'item_id', 'timestamp'], "
                                   "'item': ['item_id', 'title', 'brand']}")
    ctx = prepare(options)
    assert ctx.config["load_col"]["item"] == ["item_id", "title", "brand"]


@pytest.mark.slow
def test_ml100k_copy_runs_end_to_end(tiny_bert_dir, tmp_path, capsys):
    root = ml100k_copy(tmp_path / "data", n_lines=2000)
    assert main(as_argv(own_options(root, tiny_bert_dir, tmp_path, epochs="1"))) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == f"results: {tmp_path / 'out' / 'results.json'}"
    assert (tmp_path / "out" / "report.png").stat().st_size > 10_000


@pytest.mark.parametrize("damage, words", [
    (lambda text: text.replace("\n", "\r\n"), "Windows line endings (CRLF)"),
    (lambda text: "\ufeff" + text, "byte-order mark"),
])
def test_files_recbole_would_misread_are_named(damage, words, tiny_bert_dir, tmp_path):
    root = make_toy_dataset(str(tmp_path / "data"), name="odd")
    inter = tmp_path / "data" / "odd" / "odd.inter"
    with open(inter, newline="") as f:
        text = f.read()
    with open(inter, "w", newline="", encoding="utf-8") as f:
        f.write(damage(text))
    with pytest.raises(DatasetError, match=re.escape(words)):
        prepare(toy_options(root, tiny_bert_dir, tmp_path, dataset="odd", method="full"))
