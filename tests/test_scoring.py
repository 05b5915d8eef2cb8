"""The full-ranking scorer that picks a small set's best state gives RecBole's ``Trainer.evaluate``
numbers on the same model (so selection and reported metrics do not change with it)."""

import pytest
import torch
from recbole.data import data_preparation

from recbole_foster import FosterConfig
from recbole_foster.config import get_trainer
from recbole_foster.dataset import create_dataset
from recbole_foster.scoring import FullSortScorer, scorer_for
from recbole_foster.text_embedding import attach_item_text_embeddings
from tests.toy_data import toy_options

METRICS = {"metrics": "['Recall','NDCG','MRR','Hit','Precision','MAP']", "topk": "[3,10]", "valid_metric": "MRR@10"}


@pytest.fixture(scope="module")
def build(toy_data_root, tiny_bert_dir, tmp_path_factory):
    """``build(model, protocol)`` -> (config, train, valid, test loaders), built once each."""
    folder, made = tmp_path_factory.mktemp("scoring"), {}

    def make(name, protocol):
        if (name, protocol) not in made:
            options = toy_options(toy_data_root, tiny_bert_dir, folder, eval_protocol=protocol, **METRICS)
            options.pop("output_dir")
            config = FosterConfig(model=name, dataset=options.pop("dataset"), config_dict=options)
            train, valid, test = data_preparation(config, create_dataset(config))
            attach_item_text_embeddings(config, train.dataset, show_progress=False)
            made[name, protocol] = config, train, valid, test
        return made[name, protocol]

    return make


def trained_model(config, train, steps=8):
    """A model a few steps into training (dropout on), so its rankings are not the initial ones."""
    torch.manual_seed(0)
    model = config.model_class(config, train.dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _, interaction in zip(range(steps), train):
        model.train()
        loss = model.calculate_loss(interaction)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("name,protocol", [("TextSASRec", "loo"), ("TextGRU4Rec", "loo"),
                                           ("TextSASRec", "global_temporal"), ("TextGRU4Rec", "global_temporal"),
                                           ("TextBERT4Rec", "loo")])
def test_scorer_metrics_equal_recbole_trainer_evaluate(build, name, protocol):
    config, train, valid, test = build(name, protocol)
    model = trained_model(config, train)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    for data in (valid, test):
        scorer = FullSortScorer(config, data)
        ours = scorer.evaluate(model)
        recbole = trainer.evaluate(data, load_best_model=False, show_progress=False)
        assert list(ours) == list(recbole) and len(ours) == 12
        assert any(value > 0 for value in recbole.values())  # a ranking that finds something
        for key, value in recbole.items():
            assert ours[key] == pytest.approx(value, abs=1e-6), key
        # the kept batches serve later checks: after more training both still agree, on new numbers
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        again, recbole_again = scorer.evaluate(model), trainer.evaluate(data, load_best_model=False)
        assert again == pytest.approx(recbole_again, abs=1e-6) and again != ours


def test_scorer_is_built_once_per_loader_and_only_for_full_sort_loaders(build):
    config, train, valid, _ = build("TextSASRec", "loo")
    assert scorer_for(config, valid) is scorer_for(config, valid)
    assert scorer_for(config, train) is None
    with pytest.raises(TypeError):
        FullSortScorer(config, train)


@pytest.mark.parametrize("name,protocol", [("TextSASRec", "loo"), ("TextGRU4Rec", "global_temporal")])
def test_small_set_selection_is_the_same_with_either_scorer(build, name, protocol, monkeypatch):
    """train_and_select with the scorer sees the same weights and scores at every check, picks the
    same one and reports the same numbers as with RecBole's Trainer.evaluate (dropout on: the
    scorer must not touch the random stream either)."""
    from recbole_foster import evaluation
    from recbole_foster.context import RunContext
    from recbole_foster.training_sets import HardSequences

    config, train, valid, test = build(name, protocol)
    assert (config["hidden_dropout_prob"] or config["dropout_prob"]) > 0
    sequences = HardSequences(RunContext(config, train.dataset, train, valid, test, "").candidates[1][:12])
    runs, checks = [], []
    early_stopping = evaluation.early_stopping

    def recorded(score, *args):
        checks[-1].append((score, torch.cat([p.detach().flatten() for p in ctx.built_models[0].parameters()])))
        return early_stopping(score, *args)

    monkeypatch.setattr(evaluation, "early_stopping", recorded)
    saved = {k: config[k] for k in ("distilled_steps", "distilled_eval_every", "distilled_patience")}
    config.final_config_dict.update(distilled_steps=30, distilled_eval_every=5, distilled_patience=10)
    for fast in (True, False, True):
        ctx = RunContext(config, train.dataset, train, valid, test, "", built_models=[])
        config["distilled_fast_scorer"] = fast
        checks.append([])
        runs.append(evaluation.train_and_select(ctx, sequences, seed=7))
    config["distilled_fast_scorer"] = None
    config.final_config_dict.update(saved)
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][0][config["valid_metric"].lower()] > 0
    assert len(checks[0]) == len(checks[1]) == len(checks[2]) == 6
    for (score, weights), (score_r, weights_r), (score_2, weights_2) in zip(*checks):
        assert score == score_r == score_2
        assert torch.equal(weights, weights_r) and torch.equal(weights, weights_2)
