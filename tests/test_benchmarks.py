"""The benchmark scripts' command lines: a run option is never mistaken for a script option."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import paper_table  # noqa: E402

FAKE_METRICS = {k: 0.1 for k in paper_table.REPORTED_METRICS}


@pytest.fixture()
def runs(monkeypatch):
    """Records (name, options) of every run paper_table asks for, without running anything."""
    calls = []

    def fake(name, options, work_dir, variants=paper_table.VARIANTS):
        calls.append((name, dict(options)))
        return {"test": FAKE_METRICS, "table": {"Full": FAKE_METRICS}, "timings": {},
                "per_seed": [{"seed": 3020, "test": FAKE_METRICS}, {"seed": 3021, "test": FAKE_METRICS}]}

    monkeypatch.setattr(paper_table, "run_or_reuse", fake)
    return calls


def test_seed_is_a_run_option_not_the_number_of_evaluation_seeds(runs, tmp_path):
    paper_table.main(["--methods=random,foster", "--seed=2026", f"--out={tmp_path}"])
    assert [name for name, _ in runs] == ["random", "foster"]
    for _, options in runs:
        assert options["seed"] == "2026"
        assert options["distilled_eval_seeds"] == 3  # the default of --seeds
    with open(tmp_path / "ml-100k.json") as f:
        saved = json.load(f)
    assert saved["eval_seeds"] == 3 and saved["overrides"]["seed"] == "2026"


def test_seeds_sets_the_evaluation_seeds_and_selection_draws_follow_seed(runs, tmp_path):
    paper_table.main(["--methods=random", "--seeds=5", "--seed=2026", "--selection_seeds=2", f"--out={tmp_path}"])
    assert [name for name, _ in runs] == ["random", "random-sel1"]
    assert all(options["distilled_eval_seeds"] == 5 for _, options in runs)
    assert runs[1][1]["selection_seed"] == 2027  # seed + 1


def test_a_run_option_without_equals_sign_is_rejected_before_any_run(runs, tmp_path):
    with pytest.raises((SystemExit, ValueError)):
        paper_table.main(["--methods=random", "--seed", "2026", f"--out={tmp_path}"])
    assert runs == []


def test_ior_pairs_runs_by_draw_and_seed_and_needs_two_standard_errors():
    def runs(values):
        return {"runs": [{"draw": d, "seed": s, "test": {"ndcg@10": v}}
                         for (d, s), v in zip([(0, 1), (0, 2), (1, 1), (1, 2)], values)]}

    reference = runs([0.10, 0.20, 0.30, 0.40])
    clear = paper_table.improvement_over_random(runs([0.11, 0.21, 0.31, 0.42]), reference)
    assert clear["n"] == 4 and abs(clear["mean"] - 0.0125) < 1e-12 and clear["beyond_2se"]
    noisy = paper_table.improvement_over_random(runs([0.15, 0.15, 0.35, 0.35]), reference)
    assert abs(noisy["mean"]) < 1e-12 and not noisy["beyond_2se"]
    partial = paper_table.improvement_over_random({"runs": runs([0.2, 0.2, 0.2, 0.2])["runs"][:2]}, reference)
    assert partial["n"] == 2  # only the pairs both have
    assert paper_table.reference_of("generate_kd", {"label_storage": "topk"}) == "random_kd"
    assert paper_table.reference_of("kcenter", {"label_storage": "hard"}) == "random"
