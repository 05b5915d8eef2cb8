import os
import subprocess

import pytest
import torch

# The suite's tensors are tiny: a second intra-op thread only adds synchronisation, and on a
# loaded 2-core machine each small op can wait milliseconds for it.
torch.set_num_threads(1)

from tests.tiny_bert import make_tiny_bert
from tests.toy_data import make_toy_dataset


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return make_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def toy_data_root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_LEFTOVERS = ("__pycache__", ".pytest_cache", ".egg-info")  # Python's and pip's own, not the tests'


def _untracked(repo):
    """Untracked and ignored paths of the checkout (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--ignored", "--untracked-files=all"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return {line for line in done.stdout.splitlines()
            if line[:2] in ("??", "!!") and not any(part in line for part in BUILD_LEFTOVERS)}


@pytest.fixture(scope="session", autouse=True)
def outside_the_checkout(tmp_path_factory):
    """Run every test in a temporary working directory, and check that the checkout gains no file.

    RecBole writes ``log/`` and ``log_tensorboard/`` relative to the working directory, and the
    plugin's defaults (``saved/``, ``outputs/``) are relative too. Subprocesses still import this
    checkout's package (``PYTHONPATH``), as they did when the working directory was its root.
    """
    before = _untracked(REPO)
    old_cwd, old_path = os.getcwd(), os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + old_path if old_path else "")
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old_cwd)
    if old_path is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old_path
    after = _untracked(REPO)
    if before is not None and after is not None:
        assert not after - before, f"the tests left files in the checkout: {sorted(after - before)}"
