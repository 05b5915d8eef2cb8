"""benchmarks/pareto.py: the points grammar, the validation frontier, choices per budget, a toy run."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import paper_table  # noqa: E402
import pareto  # noqa: E402
from tests.toy_data import as_argv, toy_options  # noqa: E402


def test_points_grammar():
    assert pareto.parse_point("foster@20:int8/r4") == {"point": "foster@20:int8/r4", "kind": "foster", "n": 20,
                                                       "k": None, "precision": "int8", "rank": 4}
    assert pareto.parse_point("foster@20")["precision"] == "fp32"
    assert pareto.parse_point("text_code@40:4")["k"] == 4
    assert pareto.parse_point("popularity")["kind"] == "popularity"
    assert pareto.run_spec(pareto.parse_point("kcenter_kd@20:10"))[:2] == (
        "kcenter_kd", {"n_sequences": 20, "label_storage": "topk", "label_topk": 10})
    assert pareto.parse_point("label_model@250:8") == {"point": "label_model@250:8", "kind": "label_model",
                                                       "n": 250, "k": None, "precision": None, "rank": 8}
    assert pareto.run_spec(pareto.parse_point("label_model@250:8")) == (
        "random_kd", {"n_sequences": 250, "label_storage": "label_model", "label_model_rank": 8}, "label_model-n250-r8")
    for bad in ("hard@20:4", "topk@20", "foster@20:10", "foster@0", "dense@20:4", "hard@x", "topk@20:4/r2",
                "label_model@20", "label_model@20:4/r2", "label_model@20:fp16", "label_model@20:0"):
        with pytest.raises(ValueError, match="expected popularity"):
            pareto.parse_point(bad)


def _row(point, size, valid, test=0.0):
    return {"point": point, "artifact_bytes": size, "valid_ndcg@10": valid, "ndcg@10": test}


def test_frontier_and_budget_choices_read_validation_only():
    rows = [_row("a", 100, 0.10, test=0.50), _row("b", 200, 0.08, test=0.90), _row("c", 300, 0.12), _row("d", 300, 0.12)]
    assert pareto.validation_frontier(rows) == ["a", "c", "d"]  # b is beaten by a (fewer bytes, better validation)
    assert pareto.choice_within(rows, 250)["point"] == "a"  # b's better test is never looked at
    assert pareto.choice_within(rows, 1000)["point"] == "c"
    assert pareto.choice_within(rows, 50) is None


def test_a_toy_pareto_run_writes_json_md_png_and_resumes(toy_data_root, tiny_bert_dir, tmp_path, monkeypatch):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path)
    for key in ("output_dir", "n_sequences", "distilled_eval_seeds", "dataset"):
        options.pop(key)
    argv = ["--dataset=toy", "--points=popularity,hard@4,topk@4:2,foster@4:int8/r2,foster@4/r2", "--draws=2", "--seeds=1",
            "--reference=hard@4",
            "--budgets_kb=0.5,1,4,100", f"--work_dir={tmp_path / 'work'}", f"--out={tmp_path / 'out'}"] + as_argv(options)
    first = pareto.main(argv)
    rows = {r["point"]: r for r in first["rows"]}
    assert rows["popularity"]["n_runs"] == 1 and rows["hard@4"]["n_runs"] == 2 and rows["foster@4:int8/r2"]["n_runs"] == 2
    assert all(r["family"] == "self-contained" and r["artifact_bytes"] > 0 for r in rows.values())
    for draw in ("foster", "foster-sel1"):  # the int8 point stored the fp32 point's distillation, not its own
        with open(tmp_path / "work" / "foster-n4-int8-r2" / draw / "results.json") as f:
            assert json.load(f)["resumed_at_step"] == int(options["foster_outer_steps"])
    assert rows["hard@4"]["ior_vs_reference"] is None and rows["popularity"]["ior_vs_reference"] is None
    ior = rows["topk@4:2"]["ior_vs_reference"]
    assert ior["n"] == 2 and ior["mean"] == pytest.approx(
        sum(a["test"]["ndcg@10"] - b["test"]["ndcg@10"] for a, b in zip(rows["topk@4:2"]["runs"], rows["hard@4"]["runs"])) / 2)
    for b in first["budgets"]:
        fitting = [r for r in rows.values() if r["artifact_bytes"] <= b["budget_bytes"]]
        best = max((r["valid_ndcg@10"] for r in fitting), default=None)
        assert (b["choice"] is None) == (best is None)
        assert b["choice"] is None or b["choice"]["valid_ndcg@10"] == best
    for name in ("toy.json", "toy.md", "toy.png"):
        assert os.path.getsize(tmp_path / "out" / name) > 0
    with open(tmp_path / "out" / "toy.json") as f:
        saved = json.load(f)
    assert saved["command"].startswith("python benchmarks/pareto.py --dataset=toy")
    assert saved["frontier"] == pareto.validation_frontier(saved["rows"])

    def no_run(argv):
        raise AssertionError("a finished point was run again")

    monkeypatch.setattr(paper_table, "run", no_run)
    again = pareto.main(argv)
    assert again["rows"] == first["rows"]


def test_a_foster_point_at_lower_precision_starts_from_the_fp32_distillation(tmp_path):
    source, target = tmp_path / "foster-n20-fp32" / "foster", tmp_path / "foster-n20-int8" / "foster"
    assert not pareto.reuse_distillation(str(source), str(target))  # nothing distilled yet: run from scratch
    source.mkdir(parents=True)
    (source / pareto.CHECKPOINT_FILE).write_bytes(b"state")
    assert pareto.reuse_distillation(str(source), str(target))
    assert (target / pareto.CHECKPOINT_FILE).read_bytes() == b"state"
    (target / "results.json").write_text("{}")
    assert not pareto.reuse_distillation(str(source), str(target))  # a finished point is left alone
