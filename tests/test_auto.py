"""--method=auto --budget_bytes=B: measured bytes, choice on validation, a clear error below every candidate."""

import os

import pytest

from recbole_foster.run import main, run
from tests.toy_data import as_argv, assert_one_error_line, toy_options


def _options(toy_data_root, tiny_bert_dir, tmp_path, **extra):
    extra = {"auto_sizes": "[2,4,8]", "auto_storages": "['hard','topk']", **extra}
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="auto", label_topk=2, distilled_eval_seeds=1,
                          **extra)
    options.pop("n_sequences")
    return options


@pytest.mark.slow
def test_auto_keeps_the_best_validation_candidate_within_the_budget(toy_data_root, tiny_bert_dir, tmp_path, capsys):
    # measure the sizes first with a generous budget, then pick one that cuts some of them
    wide = run(as_argv(_options(toy_data_root, tiny_bert_dir, tmp_path, budget_bytes=10 ** 9,
                                output_dir=tmp_path / "wide")))
    sizes = {r["candidate"]: r["bytes"] for r in wide["candidates"]}
    assert set(sizes) == {"hard@8", "topk@8"}  # the largest N of each kind fits a huge budget
    budget = (sizes["topk@8"] + sizes["hard@8"]) // 2  # hard@8 fits, topk@8 does not
    assert sizes["hard@8"] < budget < sizes["topk@8"]
    result = run(as_argv(_options(toy_data_root, tiny_bert_dir, tmp_path, budget_bytes=budget,
                                  output_dir=tmp_path / "cut")))
    table = {r["candidate"]: r for r in result["candidates"]}
    assert table["topk@8"]["status"] == "over budget" and table["hard@8"]["status"] in ("chosen", "fits")
    fitting = [r for r in result["candidates"] if r["status"] != "over budget"]
    assert all(r["bytes"] <= budget for r in fitting)
    best = max(fitting, key=lambda r: (r["valid_ndcg@10"], -r["bytes"]))
    assert result["chosen"] == best["candidate"] and table[best["candidate"]]["status"] == "chosen"
    assert result["valid"]["ndcg@10"] == best["valid_ndcg@10"]
    assert result["artifact_bytes"] == os.path.getsize(result["set_file"]) <= budget
    assert result["family"] == "self-contained" and result["chosen"] in result["why"]
    assert len(result["selected_users"]) == int(result["chosen"].split("@")[1])  # provenance of the chosen set
    assert "auto:" in capsys.readouterr().out
    # the chosen set file trains again with the same metrics
    again = run(as_argv({**toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="eval", distilled_eval_seeds=1),
                         "synthetic": result["set_file"], "output_dir": str(tmp_path / "eval")}))
    assert again["test"] == result["test"]


def test_a_budget_below_every_candidate_is_one_error_line(toy_data_root, tiny_bert_dir, tmp_path, capsys):
    options = _options(toy_data_root, tiny_bert_dir, tmp_path, budget_bytes=10, output_dir=tmp_path / "tiny")
    assert main(as_argv(options)) == 2
    assert_one_error_line(capsys.readouterr().err, r"--budget_bytes=10 is below every candidate: the smallest, hard@2")
    assert not os.path.exists(tmp_path / "tiny" / "candidates")  # the over-budget sets are not left behind


def test_auto_needs_a_budget(toy_data_root, tiny_bert_dir, tmp_path, capsys):
    assert main(as_argv(_options(toy_data_root, tiny_bert_dir, tmp_path))) == 2
    assert_one_error_line(capsys.readouterr().err, "needs --budget_bytes")


@pytest.mark.slow
def test_popularity_and_label_model_are_candidates(toy_data_root, tiny_bert_dir, tmp_path):
    # a wide budget: the list and the largest label-model set are candidates beside Random-N
    wide = run(as_argv(_options(toy_data_root, tiny_bert_dir, tmp_path, budget_bytes=10 ** 9,
                                auto_storages="['popularity','hard','label_model']", auto_sizes="[2,4]",
                                popularity_recent_share=1.0, output_dir=tmp_path / "wide")))
    table = {r["candidate"]: r for r in wide["candidates"]}
    assert set(table) == {"popularity", "hard@4", "label_model@4"}
    assert all(r["valid_ndcg@10"] is not None and r["bytes"] > 0 for r in table.values())
    # a budget only the list fits: it is chosen, and its metrics are --method=popularity's
    budget = table["popularity"]["bytes"]
    assert budget < min(table["hard@4"]["bytes"], table["label_model@4"]["bytes"])
    only = run(as_argv(_options(toy_data_root, tiny_bert_dir, tmp_path, budget_bytes=budget,
                                auto_storages="['popularity','hard','label_model']", auto_sizes="[2,4]",
                                popularity_recent_share=1.0, output_dir=tmp_path / "only")))
    plain = run(as_argv({**toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="popularity",
                                       popularity_recent_share=1.0), "output_dir": str(tmp_path / "plain")}))
    assert only["chosen"] == "popularity" and only["artifact_bytes"] == budget
    assert only["valid"] == plain["valid"] and only["test"] == plain["test"]
    assert os.path.basename(only["set_file"]) == "popularity.list"
    statuses = {r["candidate"]: r["status"] for r in only["candidates"]}
    assert statuses["popularity"] == "chosen" and statuses["hard@2"] == "over budget"
    # the label-model sets' windows alone exceed the budget: skipped before any label model is fitted
    assert statuses["label_model@2"] == statuses["label_model@4"] == "over budget (its windows alone)"
