"""RecBole 1.2.1 on numpy 2, pandas 3 and torch >= 2.6: each shim, exercised for real."""

import numpy as np
import torch
from recbole.data import data_preparation

from recbole_foster import FosterConfig
from recbole_foster.dataset import create_dataset
from recbole_foster.text_embedding import attach_item_text_embeddings, item_texts
from recbole_foster.run import RunContext
from tests.toy_data import toy_options


def _toy_config(data_root, bert_dir, tmp_path, **overrides):
    options = toy_options(data_root, bert_dir, tmp_path, **overrides)
    options.pop("output_dir")
    return FosterConfig(model=options.pop("model", "TextSASRec"), dataset=options.pop("dataset"), config_dict=options)


def test_numpy_2_aliases_used_by_recbole_exist():
    from recbole.evaluator.metrics import NDCG

    FosterConfig(model="TextSASRec", dataset="ml-100k", config_dict={"use_gpu": False})  # np.float_ inside
    assert np.float_ is np.float64
    config = {"topk": [2], "metric_decimal_place": 4}
    pos_index = np.array([[True, False], [False, False]])
    ndcg = NDCG(config).metric_info(pos_index, np.array([1, 1]))  # np.float inside
    assert np.allclose(ndcg[:, 1], [1.0, 0.0])


def test_items_with_empty_or_missing_text_load_and_get_an_embedding(toy_data_root, tiny_bert_dir, tmp_path):
    config = _toy_config(toy_data_root, tiny_bert_dir, tmp_path)
    dataset = create_dataset(config)
    data_preparation(config, dataset)
    texts = item_texts(dataset, ["title"])
    token = dataset.field2token_id[dataset.iid_field]
    assert texts[token["i3"]] == ""  # empty title in the file
    assert texts[token["i4"]] == ""  # no value at all (NaN under pandas 3 without the shim)
    assert texts[token["i5"]].endswith(" 5")
    attach_item_text_embeddings(config, dataset, show_progress=False)
    table = dataset.item_text_embeddings
    assert torch.isfinite(table).all()
    assert table[token["i3"]].abs().sum() > 0 and table[token["i4"]].abs().sum() > 0
    assert table[0].abs().sum() == 0  # padding


def test_best_checkpoint_reloads_after_training_and_resumes(toy_data_root, tiny_bert_dir, tmp_path):
    config = _toy_config(toy_data_root, tiny_bert_dir, tmp_path, epochs=2)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    attach_item_text_embeddings(config, dataset, show_progress=False)
    train.dataset.item_text_embeddings = dataset.item_text_embeddings
    ctx = RunContext(config, dataset, train, valid, test, str(tmp_path / "out"))
    trainer = ctx.new_trainer(ctx.new_model(1), checkpoint_dir=str(tmp_path / "ckpt"))
    trainer.fit(train, valid, saved=True, show_progress=False)
    # torch >= 2.6 loads weights_only by default: the checkpoint must hold no pickled Config
    state = torch.load(trainer.saved_model_file, weights_only=True)
    assert state["config"]["model"] == "TextSASRec"
    trainer.model.apply(trainer.model._init_weights)  # what was trained must come from the checkpoint
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    # the evaluated model is the checkpoint's: a fresh model given those weights scores the same
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in state["state_dict"].items())
    fresh = ctx.new_trainer(ctx.new_model(3), checkpoint_dir=str(tmp_path / "other"))
    fresh.model.load_state_dict(state["state_dict"])
    assert fresh.evaluate(test, load_best_model=False, show_progress=False) == result

    resumed = ctx.new_trainer(ctx.new_model(2), checkpoint_dir=str(tmp_path / "ckpt"))
    resumed.resume_checkpoint(trainer.saved_model_file)
    for key, value in state["state_dict"].items():
        assert torch.equal(resumed.model.state_dict()[key], value)
    assert resumed.start_epoch == state["epoch"] + 1
