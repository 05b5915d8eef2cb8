"""Bad input stops with a message that says what is wrong and how to fix it."""

import pytest

from recbole_foster.cli import CLIError
from recbole_foster.errors import DatasetError
from recbole_foster.run import main, run
from tests.toy_data import as_argv, make_toy_dataset, toy_options


def test_unknown_dataset_names_the_expected_path(toy_data_root, tiny_bert_dir, tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.inter.*--data_path"):
        run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, dataset="nope", method="full")))


def test_dataset_without_item_file(tiny_bert_dir, tmp_path):
    root = make_toy_dataset(str(tmp_path / "data"), name="noitem", with_item_file=False)
    with pytest.raises(DatasetError, match=r"no item file .*noitem\.item"):
        run(as_argv(toy_options(root, tiny_bert_dir, tmp_path, dataset="noitem", method="full")))


def test_text_field_not_in_item_file(toy_data_root, tiny_bert_dir, tmp_path):
    with pytest.raises(DatasetError, match=r"\['description'\] are not columns .*title"):
        run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full",
                                text_fields="['title','description']")))


def test_unknown_method(toy_data_root, tiny_bert_dir, tmp_path):
    with pytest.raises(CLIError, match="unknown method 'fostr'.*foster"):
        run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="fostr")))


def test_main_reports_errors_without_traceback(capsys):
    assert main(["--epochs"]) == 2
    assert "malformed argument '--epochs'" in capsys.readouterr().err
    assert main(["epochs=3"]) == 2
