"""Model lookup by name through the plugin, and the command line's error messages."""

import sys

import pytest

from recbole_foster import FosterConfig, get_model, get_trainer
from recbole_foster.compat import keep_anomaly_detection
from recbole_foster.cli import CLIError, parse_args
from recbole_foster.model.text_sasrec import TextSASRec
from recbole_foster.trainer import CheckpointSafeTrainer

with keep_anomaly_detection():  # RecBole's SINE would turn it on for the whole test session
    from recbole.model.sequential_recommender import SASRec


def test_get_model_finds_plugin_and_recbole_models():
    assert get_model("TextSASRec") is TextSASRec
    assert get_model("SASRec") is SASRec


def test_get_model_unknown_name_says_what_exists():
    with pytest.raises(ValueError, match="TextSASRec"):
        get_model("TextSasrecc")


def test_get_trainer_is_checkpoint_safe_for_sequential_models():
    config = FosterConfig(model="TextSASRec", dataset="ml-100k", config_dict={"use_gpu": False})
    assert config["model"] == "TextSASRec" and config.model_class is TextSASRec
    assert get_trainer(config["MODEL_TYPE"], "TextSASRec") is CheckpointSafeTrainer
    # plugin defaults from properties/ are layered in
    assert config["MAX_ITEM_LIST_LENGTH"] == 20 and config["learner"] == "adamw"
    assert config["learning_rate"] == pytest.approx(2e-4)
    assert config["text_fields"] == ["movie_title", "class"]


def test_config_overrides_are_converted_like_recbole():
    config = FosterConfig(model="TextSASRec", dataset="ml-100k",
                          config_dict={"epochs": "7", "text_fields": "['movie_title']", "use_gpu": "False"})
    assert config["epochs"] == 7 and config["text_fields"] == ["movie_title"]


def test_parse_args_accepts_key_value_and_flags():
    assert parse_args(["--dataset=ml-100k", "--epochs=5", "--resume"]) == {
        "dataset": "ml-100k", "epochs": "5", "resume": "True"}
    assert parse_args(["--text_fields=['title','description']"])["text_fields"] == "['title','description']"


@pytest.mark.parametrize("bad", ["dataset=ml-100k", "--epochs", "--=3", "-x=1", "--a b=1"])
def test_parse_args_rejects_malformed_arguments(bad):
    with pytest.raises(CLIError, match="--"):
        parse_args([bad])


def test_duplicate_argument_is_an_error():
    with pytest.raises(CLIError, match="twice"):
        parse_args(["--epochs=1", "--epochs=2"])


def test_plugin_never_imports_quick_start():
    import recbole_foster.methods  # noqa: F401
    import recbole_foster.run  # noqa: F401

    assert "recbole.quick_start" not in sys.modules


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_method_and_exits_0(flag, capsys):
    from recbole_foster.methods import METHODS
    from recbole_foster.run import main

    assert main([flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python run_foster.py")
    for name, method in METHODS.items():
        assert f"  {name} " in out and method.summary in out, name
    assert main(["--method=foster", "--epochs=oops", flag]) == 0  # help wins over everything else


def test_run_foster_script_exits_with_mains_code(monkeypatch, capsys):
    import os
    import runpy

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_foster.py")
    for argv, code in ((["-h"], 0), (["epochs=3"], 2)):
        monkeypatch.setattr(sys, "argv", [script, *argv])
        with pytest.raises(SystemExit) as stopped:
            runpy.run_path(script, run_name="__main__")
        assert stopped.value.code == code
    assert "--method=NAME" in capsys.readouterr().out
