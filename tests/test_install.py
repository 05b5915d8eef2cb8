"""A normal (non-editable) install carries the plugin's YAML defaults and runs with them."""

import json
import os
import shutil
import site
import subprocess
import sys

import pytest
import yaml

from recbole_foster.config import OVERALL_FILES, PROPERTIES_DIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _overall(name):
    with open(os.path.join(PROPERTIES_DIR, "overall", f"{name}.yaml")) as f:
        return yaml.safe_load(f)


def test_every_overall_file_is_loaded_and_no_key_is_in_two():
    on_disk = sorted(f[: -len(".yaml")] for f in os.listdir(os.path.join(PROPERTIES_DIR, "overall")))
    assert sorted(OVERALL_FILES) == on_disk  # a new file must be added to OVERALL_FILES (its order)
    seen = {}
    for name in OVERALL_FILES:
        for key in _overall(name):
            assert key not in seen, f"{key} is in overall/{seen.get(key)}.yaml and overall/{name}.yaml"
            seen[key] = name


def _python(venv_python, *args, **kwargs):
    # -I: ignore PYTHON* variables (a PYTHONPATH=<repo> would shadow the installed copy), the user
    # site and the current directory. The editable install's .pth in the shared site-packages still
    # runs, but its finder is appended to sys.meta_path, after the venv's own site-packages.
    return subprocess.run([str(venv_python), "-I", *args], check=True, capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_non_editable_install_runs_with_the_plugin_defaults(tmp_path, toy_data_root, tiny_bert_dir):
    # A copy of the source, so the build's build/ and *.egg-info stay out of the repository.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "outputs", "saved", "log*"))
    venv_dir = tmp_path / "venv"
    # --system-site-packages: torch, recbole, transformers are used as installed, nothing is downloaded.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv_dir)],
                   check=True)
    python = venv_dir / "bin" / "python"
    purelib = _python(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # When these tests themselves run in a venv, --system-site-packages shows the base interpreter's
    # packages, not this environment's: add those as plain paths (after the venv's own).
    with open(os.path.join(purelib, "outer_site_packages.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")

    # pip itself comes from the shared site-packages; it installs into the running (venv) prefix.
    # --ignore-installed: never uninstall or touch the editable install outside the venv.
    _python(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
            "--ignore-installed", str(src), cwd=tmp_path)

    workdir = tmp_path / "cwd"  # not the repository: its recbole_foster/ must not be importable from here
    workdir.mkdir()
    where = _python(python, "-c", "import recbole_foster.config as c; print(c.__file__); print(c.PROPERTIES_DIR)",
                    cwd=workdir).stdout.split()
    assert where[0].startswith(purelib + os.sep), where
    assert where[1] == os.path.join(purelib, "recbole_foster", "properties")
    assert os.path.isfile(os.path.join(where[1], "overall", "foster.yaml"))

    out = tmp_path / "out"
    options = {
        "method": "full",
        "epochs": "1",
        "dataset": "toy",
        "data_path": str(toy_data_root),
        "text_encoder": str(tiny_bert_dir),
        "load_col": "{'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'title']}",
        "text_cache_dir": str(tmp_path / "text_cache"),
        "anchor_dir": str(tmp_path / "anchors"),
        "checkpoint_dir": str(tmp_path / "saved"),
        "output_dir": str(out),
        "use_gpu": "False",
        "state": "WARNING",
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run([str(python), "-I", "-m", "recbole_foster", *(f"--{k}={v}" for k, v in options.items())],
                         cwd=workdir, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"results: {out / 'results.json'}" in run.stdout

    with open(out / "results.json") as f:
        config = json.load(f)["config"]
    assert config["learning_rate"] == pytest.approx(0.0002)
    # one key (or more) from every overall file, none of them set on the command line
    checked = {
        "recbole": ["MAX_ITEM_LIST_LENGTH", "learning_rate", "learner", "valid_metric", "train_window"],
        "text": ["text_pooling", "text_max_tokens", "text_fields"],
        "foster": ["foster_outer_steps", "n_sampled_items", "foster_targets"],
        "td3": ["td3_window", "td3_items"],
        "coreset": ["coreset_lissa_depth", "coreset_goracs_lambda"],
        "evaluation": ["eval_protocol", "distilled_eval_seeds", "distilled_lr"],
    }
    for name, keys in checked.items():
        values = _overall(name)
        for key in keys:
            assert key not in options and config[key] == values[key], (name, key, config[key], values[key])
    assert config["epochs"] == 1 and config["anchor_dir"] == options["anchor_dir"]  # the command line still wins
    assert config["n_layers"] == 2 and config["loss_type"] == "CE"  # properties/model/TextSASRec.yaml
