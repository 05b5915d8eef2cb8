"""The README's "use a set in your own RecBole benchmark" script runs as written on an exported set."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from recbole_foster.run import run
from tests.toy_data import as_argv, toy_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_script():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("### Use a set in your own RecBole benchmark", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_script_is_at_most_ten_lines():
    assert 0 < len(readme_script().splitlines()) <= 10


@pytest.mark.slow
def test_the_readme_script_trains_recboles_sasrec_on_an_exported_set(toy_data_root, tiny_bert_dir, tmp_path,
                                                                     monkeypatch):
    """Export a tiny Random-KD set, put it where the script looks (exports/<its dataset name>/) and
    run the script unchanged in a fresh interpreter: it must train and print test metrics."""
    monkeypatch.chdir(tmp_path)  # RecBole's logger writes log/ into the working directory
    script = readme_script()
    data_path = re.search(r'"data_path": "([^"]+)"', script).group(1)
    name = re.search(r'dataset="([^"]+)"', script).group(1)
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random_kd", label_storage="text_code",
                          epochs=1, distilled_steps=3, distilled_eval_seeds=1, n_sequences=6,
                          export_atomic=str(tmp_path / "atomic"))
    exported = run(as_argv(options))["exported_atomic"]
    target = tmp_path / "work" / data_path / name
    target.mkdir(parents=True)
    base = os.path.basename(exported)
    for file in os.listdir(exported):
        shutil.copy(os.path.join(exported, file), target / file.replace(base, name, 1))
    (tmp_path / "work" / "example.py").write_text(script)
    # Plain RecBole, as the README says to run it: recbole_foster is never imported, and torch's
    # switch lets RecBole reload the checkpoint it pickled its Config into.
    runner = ("import sys; exec(compile(open('example.py').read(), 'example.py', 'exec')); "
              "assert 'recbole_foster' not in sys.modules")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", runner], cwd=tmp_path / "work", capture_output=True, text=True,
                          env={**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"ndcg@10", done.stdout), done.stdout[-2000:]
