"""Bad input stops with a message that says what is wrong and how to fix it.

Every case of issue #14 goes through ``main`` (what ``run_foster.py`` calls): exit code 2, one
``error:`` line that names the problem, no traceback, and no output folder left behind. All of
them fail before any data is loaded, so none trains anything.
"""

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from recbole_foster.cli import CLIError
from recbole_foster.distill.artifacts import save_windows
from recbole_foster.errors import DatasetError
from recbole_foster.run import main, run
from tests.toy_data import as_argv, assert_one_error_line, make_toy_dataset, toy_options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# ----- issue #14: every argument checked before data loading, exit 2, nothing written -----
def _garbage(path):
    with open(path, "wb") as f:
        f.write(os.urandom(300))
    return str(path)


class NotATensor:  # a pickled Python object: torch's safe loader refuses it
    pass


def _pickled_object(path):
    torch.save({"header": "{}", "thing": NotATensor()}, str(path))
    return str(path)


def _no_header(path):
    torch.save({"user_factor": torch.zeros(2, 2)}, str(path))
    return str(path)


def _other_format(path):
    torch.save({"header": json.dumps({"format": "someone.else/3"})}, str(path))
    return str(path)


def _truncated_windows(path, tmp_path):
    full = save_windows(str(tmp_path / "full.pt"), torch.randint(1, 100, (50, 20)), {})
    with open(full, "rb") as f:
        data = f.read()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def _truncated(path, tmp_path):
    full = tmp_path / "full.pt"
    torch.save({"header": json.dumps({"format": "recbole_foster.synthetic/1"}), "core": torch.zeros(50, 50)},
               str(full))
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


BAD = {  # name: (overrides, pattern the message must match)
    "n_sequences zero": ({"n_sequences": "0"}, r"--n_sequences must be a positive integer, got 0"),
    "n_sequences negative": ({"n_sequences": "-5"}, r"--n_sequences must be a positive integer, got -5"),
    "n_sequences text": ({"n_sequences": "abc"}, r"--n_sequences must be a positive integer, got 'abc'"),
    "epochs zero": ({"epochs": "0"}, r"--epochs must be a positive integer, got 0"),
    "eval seeds zero": ({"distilled_eval_seeds": "0"}, r"--distilled_eval_seeds must be a positive integer"),
    "outer steps negative": ({"foster_outer_steps": "-1"}, r"--foster_outer_steps must be an integer >= 0"),
    "learning rate text": ({"learning_rate": "fast"}, r"--learning_rate must be a number > 0, got 'fast'"),
    "boolean": ({"skip_malformed": "maybe"}, r"--skip_malformed must be True or False, got 'maybe'"),
    "choice": ({"eval_protocol": "random_split"}, r"--eval_protocol must be one of loo, global_temporal"),
    "label mode": ({"foster_targets": "soft"}, r"--foster_targets must be one of coupled, .*teacher"),
    "real-run extension": ({"real_run_extend": "always"}, r"--real_run_extend must be one of exact, restart_optimizer, never"),
    "unknown key with suggestion": ({"epoch": "3"}, r"unknown option --epoch: .* Did you mean --epochs\?"),
    "unknown key, case": ({"max_item_list_length": "3"}, r"unknown option .* Did you mean --MAX_ITEM_LIST_LENGTH\?"),
    "unknown key, no match": ({"zzqqx": "1"}, r"unknown option --zzqqx: not a RecBole or recbole_foster config key"),
    "config file missing": ({"config_files": "nope.yaml"}, r"--config_files: nope\.yaml does not exist"),
    "synthetic without eval": ({"method": "foster", "synthetic": "x.pt"},
                               r"--synthetic is read only by --method=eval .*--method=foster"),
    "eval without synthetic": ({"method": "eval"}, r"--method=eval needs --synthetic=PATH"),
    "synthetic missing": ({"method": "eval", "synthetic": "{tmp}/missing.pt"},
                          r"--synthetic=.*missing\.pt: no such file"),
    "synthetic folder": ({"method": "eval", "synthetic": "{tmp}"}, r"--synthetic=.* is a folder"),
    "resume wrong method": ({"method": "random", "resume": "True"},
                            r"--resume continues an interrupted distillation .*--method=random has nothing"),
    "resume without checkpoint": ({"method": "foster", "resume": "True"},
                                  r"--resume: no distillation checkpoint at .*distill_checkpoint\.pt"),
    "export with full": ({"method": "full", "export_atomic": "{tmp}/atomic"}, r"--export_atomic .*--method=full"),
    "text encoder folder missing": ({"text_encoder": "/no/such/encoder"},
                                    r"--text_encoder=/no/such/encoder: no such folder"),
    "fixed targets from random init": ({"foster_targets": "fixed", "foster_init": "random"},
                                       r"--foster_targets=fixed .*needs --foster_init=real"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_argument_exits_2_with_one_clear_line(name, toy_data_root, tiny_bert_dir, tmp_path, capsys):
    overrides, pattern = BAD[name]
    overrides = {k: v.replace("{tmp}", str(tmp_path)) for k, v in overrides.items()}
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, **overrides)
    options["output_dir"] = str(tmp_path / "out" / "run")
    assert main(as_argv(options)) == 2
    assert_one_error_line(capsys.readouterr().err, pattern)
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are valid


SETS = {  # --method=eval --synthetic=<file>: (make the file, words the message must contain)
    "garbage bytes": (_garbage, "it is neither a torch.save archive nor a safetensors file"),
    "pickled Python object": (_pickled_object, "it holds Python objects besides tensors"),
    "truncated file": (_truncated, "it is truncated"),
    "truncated safetensors set": (_truncated_windows, "(or it is truncated)"),
    "no header": (_no_header, "has no header"),
    "foreign format": (_other_format, "format 'someone.else/3'"),
}


@pytest.mark.parametrize("name", list(SETS))
def test_a_file_that_is_not_a_set_is_named_as_such(name, toy_data_root, tiny_bert_dir, tmp_path, capsys):
    make, words = SETS[name]
    path = make(tmp_path / "bad.pt", tmp_path) if make in (_truncated, _truncated_windows) else make(tmp_path / "bad.pt")
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="eval", synthetic=path)
    assert main(as_argv(options)) == 2
    err = capsys.readouterr().err
    assert "not a recbole_foster set" in err and words in err, err
    assert "weights_only" not in err and "Traceback" not in err  # never advice to load unsafely
    assert not (tmp_path / "out").exists()


def test_malformed_inter_line_stops_the_run_with_its_line_number(tiny_bert_dir, tmp_path, capsys):
    root = make_toy_dataset(str(tmp_path / "data"), name="broken")
    inter = tmp_path / "data" / "broken" / "broken.inter"
    lines = inter.read_text().splitlines(keepends=True)
    lines[4] = lines[4].rstrip("\n") + "\textra\n"  # line 5: one field too many
    lines[9] = lines[9].split("\t")[0] + "\n"  # line 10: two fields too few
    inter.write_text("".join(lines))
    options = toy_options(root, tiny_bert_dir, tmp_path, dataset="broken", method="full")
    assert main(as_argv(options)) == 2
    err = capsys.readouterr().err
    assert "broken.inter has 2 malformed lines (not 3 fields like its header): lines 5, 10" in err
    assert "--skip_malformed=True" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_malformed_item_line_is_named_too(tiny_bert_dir, tmp_path, capsys):
    root = make_toy_dataset(str(tmp_path / "data"), name="brokenitem")
    item = tmp_path / "data" / "brokenitem" / "brokenitem.item"
    item.write_text(item.read_text() + "i99\tsome title\tb1\tsurplus\n")
    options = toy_options(root, tiny_bert_dir, tmp_path, dataset="brokenitem", method="full")
    assert main(as_argv(options)) == 2
    assert "brokenitem.item has 1 malformed line (not 3 fields like its header): line 32" in capsys.readouterr().err


def test_bad_header_is_a_clear_error(tiny_bert_dir, tmp_path, capsys):
    root = make_toy_dataset(str(tmp_path / "data"), name="badhead")
    inter = tmp_path / "data" / "badhead" / "badhead.inter"
    text = inter.read_text()
    inter.write_text(text.replace("timestamp:float", "timestamp:date", 1))
    assert main(as_argv(toy_options(root, tiny_bert_dir, tmp_path, dataset="badhead", method="full"))) == 2
    assert "header column 'timestamp:date' is not name:type" in capsys.readouterr().err


def test_failed_run_after_validation_leaves_no_empty_output_folder(toy_data_root, tiny_bert_dir, tmp_path,
                                                                   monkeypatch, capsys):
    """A run that fails after the inputs were accepted (here: while loading data) removes the
    output folders it created, as long as nothing was written into them."""
    import recbole_foster.run as run_module

    def fail(config, **kwargs):
        raise DatasetError("simulated failure while loading")

    monkeypatch.setattr(run_module, "create_dataset", fail)
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full")
    options["output_dir"] = str(tmp_path / "outputs" / "toy" / "full")
    assert main(as_argv(options)) == 2
    assert "simulated failure" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_no_traceback_from_the_command_line(toy_data_root, tiny_bert_dir, tmp_path):
    """The real entry point, in a fresh process: exit status 2 and no Python traceback."""
    garbage = _garbage(tmp_path / "garbage.pt")
    base = toy_options(toy_data_root, tiny_bert_dir, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    for overrides, words in (({"n_sequences": "abc"}, "--n_sequences must be a positive integer"),
                             ({"method": "eval", "synthetic": garbage}, "is not a recbole_foster set")):
        argv = as_argv({**base, **overrides})
        done = subprocess.run([sys.executable, os.path.join(REPO, "run_foster.py"), *argv], capture_output=True,
                              text=True, env=env, timeout=300)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and words in done.stderr, done.stderr
        assert "weights_only" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_pickle_files_are_never_unpickled(tmp_path, monkeypatch):
    """The set check reads with torch's safe loader only: a malicious pickle's code never runs."""
    from recbole_foster.validation import check_saved_set_file

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump(Boom(), f)
    with pytest.raises(CLIError, match="not a recbole_foster set"):
        check_saved_set_file(str(path))
    assert not (tmp_path / "pwned").exists()


def test_every_choice_list_is_where_the_check_looks():
    """The value checks read each choice list from the module that owns it; a renamed list fails here."""
    from recbole_foster.validation import CHOICES, allowed_values

    for key in CHOICES:
        assert allowed_values(key), key


def test_every_key_the_package_reads_is_a_known_key():
    """An unknown --key is an error, so every key the code reads needs a default in properties/
    (or to be a run key of run.PLUGIN_KEYS); RecBole's derived keys are set by RecBole itself."""
    import glob
    import re

    from recbole_foster.config import FosterConfig
    from recbole_foster.run import PLUGIN_KEYS
    from recbole_foster.validation import known_keys

    config = FosterConfig(model="TextSASRec", dataset="ml-100k", config_dict={"use_gpu": False})
    known = known_keys(config, PLUGIN_KEYS) | {"device", "single_spec", "eval_type", "MODEL_INPUT_TYPE"}
    package = os.path.join(REPO, "recbole_foster")
    read = set()
    for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
        with open(path) as f:
            read |= set(re.findall(r"config\[\"(\w+)\"\]", f.read()))
    assert read - known == set()


# ----- the first hour: refused before any text embedding or training, one error line, exit 2 -----
@pytest.fixture
def no_embedding_or_training(monkeypatch):
    """Embedding the item texts or training the real-data run fails the test."""
    import recbole_foster.real_run as real_run_module
    import recbole_foster.run as run_module

    def forbidden(*args, **kwargs):
        raise AssertionError("embedded or trained before refusing the input")

    monkeypatch.setattr(run_module, "attach_item_text_embeddings", forbidden)
    monkeypatch.setattr(real_run_module, "ensure_real_run", forbidden)
    monkeypatch.setattr(real_run_module, "find_real_run", forbidden)


def _set_of_another_dataset(path):
    from recbole_foster.distill.artifacts import save_windows

    header = {"dataset": "other", "item_catalog": {"n_items": 6, "sha256": "0" * 64}, "label_storage": "hard",
              "n_sequences": 2}
    return save_windows(str(path), torch.tensor([[1, 2, 3], [4, 5, 0]]), header)


def _bad_yaml(path):
    path.write_text("epochs: 3\nlearning_rate: [0.1\n")
    return str(path)


@pytest.mark.parametrize("case,overrides,pattern", [
    ("yaml", {"config_files": _bad_yaml}, r"--config_files: a YAML file cannot be read \(line \d+"),
    ("model", {"model": "SASRecc"}, r"--model=SASRecc: .*neither a recbole_foster model"),
    ("sampled", {"method": "foster", "n_sampled_items": "31"}, r"--n_sampled_items=31 but the catalog has only 30"),
    ("sampled_td3", {"method": "td3", "n_sampled_items": "40"}, r"--n_sampled_items=40 but the catalog has only 30"),
    ("users", {"method": "random", "n_sequences": "41"}, r"--n_sequences=41 but the training split has only 40"),
    ("other_set", {"method": "eval", "synthetic": _set_of_another_dataset},
     r"distilled on dataset 'other' with a different item catalog"),
])
def test_first_hour_mistakes_stop_before_embedding_or_training(case, overrides, pattern, toy_data_root, tiny_bert_dir,
                                                             tmp_path, capsys, no_embedding_or_training):
    overrides = {k: v(tmp_path / f"{case}.file") if callable(v) else v for k, v in overrides.items()}
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, **overrides)
    options["output_dir"] = str(tmp_path / "outputs" / case)
    assert main(as_argv(options)) == 2
    assert_one_error_line(capsys.readouterr().err, pattern)
    assert not os.path.exists(tmp_path / "outputs")


def test_an_unavailable_text_encoder_is_one_error_line(toy_data_root, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    import recbole_foster.run as run_module
    from recbole_foster.text_embedding import TextEncoderUnavailable

    def unavailable(*args, **kwargs):
        raise TextEncoderUnavailable("the text encoder 'nope' cannot be loaded (offline); pass --text_encoder=DIR.")

    monkeypatch.setattr(run_module, "attach_item_text_embeddings", unavailable)
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full")
    options["output_dir"] = str(tmp_path / "outputs" / "full")
    assert main(as_argv(options)) == 2
    assert_one_error_line(capsys.readouterr().err, r"text encoder 'nope' cannot be loaded")
    assert not os.path.exists(tmp_path / "outputs")


def test_eval_writes_to_a_folder_named_after_its_set(toy_data_root, tiny_bert_dir, tmp_path):
    from recbole_foster.run import build_config

    paths = []
    for method in ("random_kd-20", "foster-20"):
        folder = tmp_path / "outputs" / "toy" / "TextSASRec" / method / "seed2020"
        folder.mkdir(parents=True)
        paths.append(_set_of_another_dataset(folder / "set.pt"))
    exported = tmp_path / "exports" / "toy-random_kd20"
    exported.mkdir(parents=True)
    dirs = []
    for synthetic in paths + [str(exported)]:
        options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="eval", synthetic=synthetic)
        options.pop("output_dir")
        config, method = build_config(options)
        dirs.append(config["output_dir"])
    assert dirs == [os.path.join("outputs", "toy", "TextSASRec", name, "seed2020") for name in
                    ("eval-random_kd-20-seed2020-set", "eval-foster-20-seed2020-set", "eval-toy-random_kd20")]
