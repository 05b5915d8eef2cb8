"""The benchmark scripts' command lines: a run option is never mistaken for a script option."""

import json
import os
import sys

import pytest
import torch

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


def test_recommended_preset_is_one_table_of_full_random_both_random_kd_storages_and_foster(monkeypatch, tmp_path):
    argvs = []

    def fake_run(argv):
        argvs.append(argv)
        storage = next((a.split("=")[1] for a in argv if a.startswith("--label_storage=")),
                       "dense" if "--method=foster" in argv else None)
        return {"test": FAKE_METRICS, "table": {"Full": FAKE_METRICS}, "timings": {}, "label_storage": storage,
                "per_seed": [{"seed": 3020, "test": FAKE_METRICS}]}

    monkeypatch.setattr(paper_table, "run", fake_run)
    paper_table.main(["--methods=recommended", f"--work_dir={tmp_path / 'w'}", f"--out={tmp_path}"])
    methods = [next(a for a in argv if a.startswith("--method=")) for argv in argvs]
    assert methods == ["--method=random", "--method=random_kd", "--method=random_kd", "--method=foster"]
    assert {"--label_storage=topk", "--label_topk=10"} <= set(argvs[1])
    assert {"--label_storage=text_code", "--label_topk=10"} <= set(argvs[2])
    assert not any(a.startswith("--label_storage") for a in argvs[0] + argvs[3])
    rows = json.loads((tmp_path / "ml-100k.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["Full", "Random-20", "Random-KD-20, top-10 labels",
                                           "Random-KD-20, text-code labels (≤ top-10 bytes)", "FOSTER-20"]
    assert rows[-1]["ior_reference"] == "Random-KD-20, top-10 labels"  # FOSTER paired with the top-k draws
    assert "Random-KD-20, top-10 labels" in (tmp_path / "ml-100k.md").read_text()


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


import label_storage  # noqa: E402
import learning_curve  # noqa: E402


def test_label_storage_runs_every_storage_on_the_same_draws_and_pairs_ior(monkeypatch, tmp_path):
    calls = []

    def fake(name, options, work_dir, variants=None):
        calls.append((name, options.get("label_storage"), work_dir))
        better = 0.01 if options.get("label_storage") == "text_code" else 0.0
        metrics = {**FAKE_METRICS, "ndcg@10": 0.1 + better}
        return {"test": metrics, "table": {"Full": FAKE_METRICS}, "timings": {}, "label_storage": options.get("label_storage"),
                "family": "self-contained", "artifact_bytes": 100, "config": {"epochs": 15, "model": "TextSASRec", "seed": 2020},
                "per_seed": [{"seed": s, "test": {**metrics, "ndcg@10": metrics["ndcg@10"] + s * 1e-4}}
                             for s in (3020, 3021)]}

    def full_results(stopped_by, dataset="ml-100k"):
        path = tmp_path / f"full-{stopped_by.replace(' ', '-')}-{dataset}.json"
        path.write_text(json.dumps({"method": "full", "dataset": dataset, "model": "TextSASRec", "seed": 2020,
                                    "test": {**FAKE_METRICS, "ndcg@10": 0.3}, "training": {
            "epochs_trained": 17, "epoch_cap": 100, "best_epoch": 11, "stopping_step": 5, "stopped_by": stopped_by}}))
        return path

    monkeypatch.setattr(label_storage, "run_or_reuse", fake)
    argv = ["--storages=topk,text_code", "--methods=random_kd,kcenter_kd", "--selection_seeds=2",
            "--foster_draws=1", f"--work_dir={tmp_path / 'w'}", f"--runs=text_code:{tmp_path / 'old'}",
            f"--runs=topk:{tmp_path / 'top'}", f"--out={tmp_path}"]
    with pytest.raises(SystemExit, match="epoch cap"):  # a capped Full is never the headline's Full
        label_storage.main(argv + [f"--converged_full={full_results('epoch cap')}"])
    with pytest.raises(SystemExit, match="dataset is 'ml-1m'"):  # nor another dataset's
        label_storage.main(argv + [f"--converged_full={full_results('early stopping', 'ml-1m')}"])
    assert not calls  # both refused before any run
    label_storage.main(argv + [f"--converged_full={full_results('early stopping')}"])
    assert ("random", None, str(tmp_path / "top")) in calls
    assert ("random_kd-sel1", "text_code", str(tmp_path / "old")) in calls  # an existing work dir is reused
    assert ("kcenter_kd-sel1", "topk", str(tmp_path / "top")) in calls
    with open(tmp_path / "ml-100k.json") as f:
        ordered = [r["method"] for r in json.load(f)["rows"]]
    assert ordered[:2] == ["Full, converged (early stopping after 17 epochs, patience 5, best epoch 11)",
                           "Full, the sets' teacher (at most 15 epochs)"]
    with open(tmp_path / "ml-100k.json") as f:
        rows = {r["method"]: r for r in json.load(f)["rows"]}
    assert rows[ordered[0]]["ndcg@10"] == 0.3
    code = rows["Random-KD-20, text-code labels (≤ top-10 bytes)"]
    assert code["ior"]["n"] == 4 and abs(code["ior"]["mean"] - 0.01) < 1e-9 and code["ior"]["beyond_2se"]
    kcenter = rows["K-Center-KD-20, text-code labels (≤ top-10 bytes)"]
    assert abs(kcenter["ior_same_labels"]["mean"]) < 1e-9 and not kcenter["ior_same_labels"]["beyond_2se"]
    assert "ior" not in rows["Random-KD-20, top-10 labels"]
    assert ("foster", None, str(tmp_path / "top")) in calls and ("foster-sel1", None) not in [c[:2] for c in calls]
    foster = rows["FOSTER-20 (paper's method, its own soft sequences)"]
    assert foster["ior"]["n"] == 2 and abs(foster["ior"]["mean"]) < 1e-9  # paired with Random-KD's draw 0 only
    assert "| IOR N@10 (vs) | build s | peak MB (build, train on set) |" in (tmp_path / "ml-100k.md").read_text()
    assert (tmp_path / "ml-100k.png").stat().st_size > 0 and (tmp_path / "ml-100k.md").exists()


@pytest.mark.slow
def test_learning_curve_resumes_one_distillation_point_by_point(toy_data_root, tiny_bert_dir, tmp_path):
    from recbole_foster.run import run
    from tests.toy_data import as_argv, toy_options

    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path)
    run_options = {k: v for k, v in options.items() if k not in ("dataset", "output_dir", "foster_outer_steps")}
    argv = [f"--dataset={options['dataset']}", "--max_steps=4", "--every=2", f"--work_dir={tmp_path / 'curve'}",
            f"--out={tmp_path / 'out'}"] + [f"--{k}={v}" for k, v in run_options.items()]
    learning_curve.main(argv)
    with open(tmp_path / "out" / "toy-foster.json") as f:
        curve = json.load(f)
    assert [p["steps"] for p in curve["points"]] == [0, 2, 4]
    assert curve["points"][0]["s_per_step"] is None and all(p["s_per_step"] > 0 for p in curve["points"][1:])
    # the 4-step point, reached by resuming the 2-step run, is the set of an uninterrupted 4-step run
    direct = run(as_argv({**options, "method": "foster", "foster_outer_steps": "4", "distilled_eval_seeds": "1",
                          "foster_compare_random": "False", "output_dir": str(tmp_path / "direct")}))
    assert curve["points"][2]["valid_ndcg@10"] == direct["valid"]["ndcg@10"]
    assert curve["points"][2]["test_ndcg@10"] == direct["test"]["ndcg@10"]
    learning_curve.main(argv)  # a finished curve is read back, not re-run
    assert (tmp_path / "out" / "toy-foster.png").stat().st_size > 0


import budget_curve  # noqa: E402


def test_budget_curve_runs_each_budget_on_the_same_draws_and_compares_storages(monkeypatch, tmp_path):
    calls = []

    def fake(name, options, work_dir, variants=None):
        calls.append((name, options["n_sequences"], options.get("label_storage"), work_dir))
        value = {"text_code": 0.3, "topk": 0.2}.get(options.get("label_storage"), 0.1) + options["n_sequences"] * 1e-3
        return {"test": {**FAKE_METRICS, "ndcg@10": value}, "table": {"Full": FAKE_METRICS}, "timings": {},
                "family": "self-contained", "artifact_bytes": 10 * options["n_sequences"],
                "per_seed": [{"seed": s, "test": {**FAKE_METRICS, "ndcg@10": value + s * 1e-5}} for s in (1, 2)]}

    monkeypatch.setattr(budget_curve, "run_draws", lambda method, options, work_dir, draws, seed: label_storage.pooled(
        [fake(method, options, work_dir)]))
    budget_curve.main(["--budgets=5,20", f"--work_dir={tmp_path / 'w'}", f"--runs=topk@20:{tmp_path / 'old'}",
                       f"--out={tmp_path}"])
    assert {(name, n, storage) for name, n, storage, _ in calls} == {
        (m, n, s) for n in (5, 20) for m, s in (("random", None), ("random_kd", "topk"), ("random_kd", "text_code"))}
    assert ("random_kd", 20, "topk", str(tmp_path / "old")) in calls
    with open(tmp_path / "ml-100k.json") as f:
        rows = json.load(f)["rows"]
    code = [r for r in rows if r["label_storage"] == "text_code"]
    assert [r["n"] for r in code] == [5, 20] and all(abs(r["ior_vs_topk"]["mean"] - 0.1) < 1e-9 for r in code)
    assert (tmp_path / "ml-100k.png").stat().st_size > 0


def test_label_storage_draw_seed_gives_new_draws_with_the_same_teacher(monkeypatch, tmp_path):
    seen = []

    def fake(name, options, work_dir, variants=None):
        seen.append((name, options.get("selection_seed"), options.get("seed")))
        return {"test": FAKE_METRICS, "table": {"Full": FAKE_METRICS}, "timings": {}, "family": "self-contained", "config": {"epochs": 15},
                "per_seed": [{"seed": 1, "test": FAKE_METRICS}]}

    monkeypatch.setattr(label_storage, "run_or_reuse", fake)
    label_storage.main(["--storages=topk", "--selection_seeds=2", "--draw_seed=2030", f"--work_dir={tmp_path}",
                        f"--out={tmp_path}"])
    assert ("random_kd", 2030, None) in seen and ("random_kd-sel1", 2031, None) in seen  # seed (teacher) unchanged


def test_ablation_reports_validation_to_choose_on_beside_test(monkeypatch, tmp_path):
    import ablation

    calls = []

    def fake(name, options, work_dir, variants=None):
        calls.append((name, variants[name]))
        valid = 0.02 if name == "init_random" else 0.01
        return {"test": FAKE_METRICS, "valid": {"ndcg@10": valid, "ndcg@10_std": 0.001}, "timings": {}}

    monkeypatch.setattr(ablation, "run_or_reuse", fake)
    ablation.main(["--rows=foster,init random,synthetic lr 0.01", f"--out={tmp_path}", f"--work_dir={tmp_path}"])
    assert [name for name, _ in calls] == ["foster", "init_random", "synthetic_lr_0_01"]
    assert calls[1][1] == ("foster", {"foster_init": "random"})
    table = (tmp_path / "ablation-ml-100k.md").read_text()
    assert "| method | family | bytes | valid N@10 | R@10 |" in table
    assert "| init random | - | - | 0.0200 ± 0.0010 | 0.1000 |" in table


def test_small_set_step_times_every_label_variant_on_every_case(tmp_path):
    import small_set_step

    small_set_step.main(["--windows=3,5", "--catalogs=40", "--steps=1", "--repeats=1", "--text_dim=8", f"--out={tmp_path}"])
    results = json.load(open(tmp_path / "small-set-step.json"))
    assert [(c["windows"], c["catalog"]) for c in results["cases"]] == [(3, 40), (5, 40)]
    for case in results["cases"]:
        assert set(case["s_per_step"]) == set(small_set_step.VARIANTS)
        assert all(s > 0 for s in case["s_per_step"].values())
    assert (tmp_path / "small-set-step.png").exists()


def test_equal_bytes_chooses_each_storage_on_validation_within_the_budget(monkeypatch, tmp_path):
    import equal_bytes

    calls = []
    # (storage, n, k) -> (bytes, validation, test): text_code@60:2 is best on test but over budget,
    # text_code@40:4 is best on validation within it, text_code@20 best on test within it
    made = {("hard", 20, None): (40, 0.10, 0.10), ("topk", 20, 10): (100, 0.12, 0.12),
            ("text_code", 20, 10): (98, 0.13, 0.16), ("hard", 120, None): (97, 0.14, 0.14),
            ("text_code", 40, 4): (99, 0.15, 0.15), ("text_code", 60, 2): (101, 0.20, 0.20)}

    def fake(method, options, work_dir, draws, seed):
        key = (options.get("label_storage", "hard"), options["n_sequences"], options.get("label_topk"))
        calls.append((method, key, work_dir))
        size, valid, test = made[key]
        # pooled over two draws: the top-level "valid" is draw 0's, the draws' mean is ``valid``
        return {"test": {**FAKE_METRICS, "ndcg@10": test}, "valid": {"ndcg@10": 1.0 - valid},
                "draws": [{"valid_ndcg@10": valid - 0.01, "ndcg@10": 1.0}, {"valid_ndcg@10": valid + 0.01, "ndcg@10": 0.0}],
                "table": {"Full": FAKE_METRICS}, "family": "self-contained", "artifact_bytes": size,
                "label_storage": key[0], "n_sequences": key[1], "config": {"label_topk": key[2] or 10},
                "runs": [{"draw": d, "seed": 1, "test": {"ndcg@10": test + d * 0.01}} for d in (0, 1)]}

    monkeypatch.setattr(equal_bytes, "run_draws", fake)
    equal_bytes.main(["--points=hard@20,topk@20,text_code@20,hard@120,text_code@40:4,text_code@60:2",
                      f"--runs=text_code@20:{tmp_path / 'old'}", f"--runs=text_code@60:2:{tmp_path / 'old60'}",
                      f"--work_dir={tmp_path / 'w'}", f"--out={tmp_path}"])
    assert [c[1] for c in calls] == list(made)
    assert ("random_kd", ("text_code", 20, 10), str(tmp_path / "old")) in calls
    assert ("random_kd", ("text_code", 60, 2), str(tmp_path / "old60")) in calls
    assert calls[0][0] == "random" and calls[4][2] == str(tmp_path / "w" / "text_code-n40-k4")
    results = json.load(open(tmp_path / "ml-100k.json"))
    assert results["budget_bytes"] == 100
    assert results["chosen_on_validation"] == {"hard": "hard@120", "topk": "topk@20:10", "text_code": "text_code@40:4"}
    iors = {r["point"]: r["ior_vs_reference"] for r in results["rows"]}
    assert iors["topk@20:10"] is None and abs(iors["hard@120"]["mean"] - 0.02) < 1e-9  # paired with topk@20 by draw
    assert (tmp_path / "ml-100k.png").stat().st_size > 0


def test_equal_bytes_refuses_a_reused_run_that_is_not_its_point(monkeypatch, tmp_path):
    import equal_bytes

    def teacher_assisted(method, options, work_dir, draws, seed):  # the text_code@20 folder holds another run
        wrong = options["label_storage"] == "text_code"
        return {"test": FAKE_METRICS, "valid": FAKE_METRICS, "table": {"Full": FAKE_METRICS}, "artifact_bytes": 1,
                "family": "teacher-assisted" if wrong else "self-contained", "n_sequences": 20,
                "label_storage": "teacher" if wrong else "topk", "config": {"label_topk": 10}}

    monkeypatch.setattr(equal_bytes, "run_draws", teacher_assisted)
    with pytest.raises(SystemExit, match="needs text_code, 20, 10, self-contained"):
        equal_bytes.main(["--points=topk@20,text_code@20", "--budget_of=topk@20", f"--runs=text_code@20:{tmp_path}",
                          f"--out={tmp_path}"])
    with pytest.raises(SystemExit):
        equal_bytes.main(["--points=topk@20", "--budget_of=topk@20", f"--runs=hard@50:{tmp_path}", f"--out={tmp_path}"])


@pytest.mark.slow
def test_default_run_times_a_fresh_run_and_refuses_used_caches(toy_data_root, tiny_bert_dir, tmp_path):
    import default_run
    from tests.toy_data import toy_options

    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random", epochs="1")
    argv = [f"--{k}={v}" for k, v in options.items()]
    out = tmp_path / "speed"
    default_run.main(argv + [f"--work_dir={tmp_path / 'fresh'}", f"--out={out}", "--target_s=0.5"])
    result = json.loads((out / "default-run.json").read_text())
    assert result["wall_s"] > 0.5 and not result["within_target"]  # a whole run cannot take half a second
    assert result["cpu_s"] > 0 and result["method"] == "random"
    assert {"data", "embed", "train", "eval", "total"} <= set(result["phases_s"])
    assert os.listdir(tmp_path / "fresh" / "anchors")  # its own caches, not the options' anchor_dir
    assert not (tmp_path / "anchors").exists()
    assert (out / "default-run.png").exists()
    with pytest.raises(SystemExit, match="not empty"):
        default_run.main(argv + [f"--work_dir={tmp_path / 'fresh'}", f"--out={out}"])


import resave_sets  # noqa: E402


def test_resave_sets_rewrites_an_old_window_set_smaller_with_the_same_content(tmp_path):
    from recbole_foster.distill.artifacts import WINDOWS_FORMAT, read_set, stored_labels_of

    seqs = torch.randint(1, 500, (12, 20))
    seqs[:4, 15:] = 0
    mask = (seqs[:, 1:] > 0) & (seqs[:, :-1] > 0)
    labels = {"label_mask": mask, "label_topk_probs": torch.rand(int(mask.sum()), 3).half()}
    path = str(tmp_path / "set.pt")  # as sets were written before: int32 ids and the mask
    torch.save({"header": json.dumps({"format": "recbole_foster.windows/1", "label_storage": "topk",
                                      "selected_users": [f"user{i}" for i in range(12)]}),
                "item_seqs": seqs.int(), **labels}, path)
    old = os.path.getsize(path)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"set_file": path, "artifact_bytes": old, "artifact_bytes_parts": {"set_file": old},
                                   "test": {"ndcg@10": 0.5}}))
    resave_sets.main([str(tmp_path)])
    after = json.loads(results.read_text())
    assert after["artifact_bytes"] == os.path.getsize(path) <= old - seqs.numel() * 2 - mask.numel() + 128
    assert after["test"] == {"ndcg@10": 0.5}
    header, payload = read_set(path)
    assert header["format"] == WINDOWS_FORMAT and "selected_users" not in header  # provenance: results.json
    assert after["selected_users"] == [f"user{i}" for i in range(12)]
    assert torch.equal(payload["item_seqs"].long(), seqs)
    back = stored_labels_of(payload)
    assert torch.equal(back["label_mask"], mask) and torch.equal(back["label_topk_probs"], labels["label_topk_probs"])


def test_resave_sets_rewrites_an_old_popularity_list_with_two_byte_ids(tmp_path):
    import numpy as np

    from recbole_foster.methods.popularity import LIST_FORMAT, read_list

    items = np.arange(1000, 900, -1).astype("<i4")  # 100 items
    path = tmp_path / "popularity.list"  # as lists were written before: int32 ids, no id_bytes
    path.write_bytes(json.dumps({"format": LIST_FORMAT, "recent_share": 0.1}).encode() + b"\n" + items.tobytes())
    old = os.path.getsize(path)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"set_file": str(path), "artifact_bytes": old, "test": {"ndcg@10": 0.1}}))
    resave_sets.main([str(tmp_path)])
    after = json.loads(results.read_text())
    header, again = read_list(str(path))
    assert again.tolist() == items.tolist() and header["recent_share"] == 0.1 and header["id_bytes"] == 2
    assert after["artifact_bytes"] == os.path.getsize(path) < old
    assert after["artifact_bytes_parts"]["item_ids"] == 2 * len(items)


