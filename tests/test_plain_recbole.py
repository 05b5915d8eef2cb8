"""Plain RecBole, never importing this package, trains a stock SASRec on an exported set.

RecBole 1.2.1 predates numpy 2, pandas 3, setuptools 81 and torch's ``weights_only`` default;
setup.py caps the first three, and torch's documented ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
lets RecBole reload its own checkpoints (which pickle its ``Config``). The RecBole code runs in
a fresh interpreter, so nothing this package patches at import can help it.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from recbole_foster.run import run
from tests.toy_data import as_argv, toy_options

PLAIN_RECBOLE = textwrap.dedent("""
    import json, math, sys

    import recbole.quick_start  # noqa: F401  imports ray, which needs pkg_resources
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    data_path, name, checkpoint_dir = sys.argv[1:4]
    config = Config(model="SASRec", dataset=name, config_dict={
        "data_path": data_path, "checkpoint_dir": checkpoint_dir, "use_gpu": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "text"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "train_neg_sample_args": None, "loss_type": "CE", "hidden_size": 16, "inner_size": 32,
        "n_layers": 1, "n_heads": 1, "epochs": 2, "MAX_ITEM_LIST_LENGTH": 20, "show_progress": False,
        "state": "WARNING"})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    trainer = Trainer(config, SASRec(config, train.dataset).to(config["device"]))
    trainer.fit(train, valid, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    assert "recbole_foster" not in sys.modules, "plain RecBole imported recbole_foster"
    print("RESULT " + json.dumps(dict(result)))
""")


def test_stock_recbole_trains_sasrec_on_an_exported_set_without_this_package(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random_kd", label_storage="topk",
                          label_topk=5, epochs=1, distilled_steps=5, distilled_eval_seeds=1, n_sequences=6,
                          export_atomic=str(tmp_path / "atomic" / "exported"))
    folder = run(as_argv(options))["exported_atomic"]
    data_path, name = os.path.split(os.path.normpath(folder))
    assert os.path.isfile(os.path.join(folder, f"{name}.item"))  # item texts: a token_seq column

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # torch >= 2.6: RecBole's checkpoints pickle its Config
    done = subprocess.run([sys.executable, "-c", PLAIN_RECBOLE, data_path, name, str(tmp_path / "saved_plain")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, ("plain RecBole failed; is this environment installed from setup.py "
                                  "(numpy<2, pandas<3, setuptools<81)?\n" + done.stderr[-3000:])
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert {"ndcg@10", "recall@10"} <= set(result)
    assert all(math.isfinite(v) for v in result.values())
