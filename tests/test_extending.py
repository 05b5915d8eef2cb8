"""A method and a label storage written outside the package run end to end (docs/extending.md).

Neither edits a package file: the method is named on the command line as ``module:Class``, the
storage is registered by importing its module (:func:`recbole_foster.labels.register_storage`).
"""

import os

import pytest

from recbole_foster.distill.artifacts import read_set
from recbole_foster.labels import STORAGES, get_storage
from recbole_foster.methods import METHODS, get_method
from recbole_foster.run import main, run
from tests.toy_data import as_argv, assert_one_error_line, toy_options

OUTSIDE = "tests.examples.last_items:LastItems"


def test_an_outside_method_is_found_by_module_and_class():
    method = get_method(OUTSIDE)
    assert method.name == "last_items" and METHODS["last_items"] is method
    assert method.row_label(5) == "Longest-5" and method.family({"distilled_student_init": "fresh"}) == "self-contained"
    with pytest.raises(ValueError, match="cannot import Nope"):
        get_method("tests.examples.last_items:Nope")


def test_an_unknown_outside_method_is_one_error_line(capsys):
    assert main(["--method=tests.examples.nothing_here:Method"]) == 2
    assert_one_error_line(capsys.readouterr().err, r"cannot import Method from tests\.examples\.nothing_here")


@pytest.mark.slow
def test_an_outside_method_runs_end_to_end(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method=OUTSIDE, distilled_eval_seeds=1)
    options.pop("output_dir")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        results = run(as_argv(options))
    finally:
        os.chdir(cwd)
    assert results["method"] == "last_items" and results["n_sequences"] == 4
    assert set(results["table"]) == {"Full", "Longest-4"} and results["family"] == "self-contained"
    folder = tmp_path / "outputs" / "toy" / "TextSASRec" / "last_items-4" / "seed2020"
    _, saved = read_set(str(folder / "set.pt"))
    assert saved["item_seqs"].shape[0] == 4
    assert (saved["item_seqs"] > 0).sum(1).min() == 10  # the longest training windows: 12 items minus valid and test
    assert (folder / "results.json").is_file()


@pytest.mark.slow
def test_an_outside_label_storage_runs_end_to_end(toy_data_root, tiny_bert_dir, tmp_path):
    import tests.examples.last_items  # noqa: F401 - registers the top1 storage

    assert get_storage("top1") is STORAGES["top1"]
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random_kd", label_storage="top1",
                          distilled_eval_seeds=1)
    results = run(as_argv(options))
    assert results["label_storage"] == "top1" and results["family"] == "self-contained"
    assert results["stored_label_kl"] > 0  # lossy: trained on what is kept
    _, saved = read_set(results["set_file"])
    assert "label_top1_probs" in saved and saved["label_top1_items"].shape[1] == 1
    again = run(as_argv({**options, "method": "eval", "synthetic": results["set_file"],
                         "output_dir": str(tmp_path / "eval")}))
    assert again["label_storage"] == "top1" and again["test"] == results["test"]
