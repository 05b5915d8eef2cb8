"""BENCHMARKS.md is generated from the committed result JSONs, and CI catches drift."""

import importlib.util
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_benchmarks():
    spec = importlib.util.spec_from_file_location("make_benchmarks", os.path.join(ROOT, "benchmarks",
                                                                                  "make_benchmarks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_md_and_the_readme_headline_match_the_jsons():
    assert make_benchmarks().main(["--check"]) == 0, "run: python benchmarks/make_benchmarks.py"


def test_the_check_fails_with_one_line_when_benchmarks_md_is_stale(tmp_path, monkeypatch, capsys):
    shutil.copytree(os.path.join(ROOT, "benchmarks", "results"), tmp_path / "benchmarks" / "results",
                    ignore=shutil.ignore_patterns("*.png"))
    for name in ("BENCHMARKS.md", "README.md"):
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    (tmp_path / "BENCHMARKS.md").write_text((tmp_path / "BENCHMARKS.md").read_text().replace("0.0329", "0.0330"))
    module = make_benchmarks()
    monkeypatch.setattr(module, "ROOT", str(tmp_path))
    assert module.main(["--check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python benchmarks/make_benchmarks.py" in err[0]
    assert module.main([]) == 0 and module.main(["--check"]) == 0  # writing it makes it current


def test_the_headline_text_code_number_is_the_jsons():
    with open(os.path.join(ROOT, "benchmarks", "results", "label-storage", "ml-100k.json")) as f:
        rows = json.load(f)["rows"]
    code = next(r for r in rows if r["label_storage"] == "text_code")
    expected = f"{code['ndcg@10']:.4f} ± {code['ndcg@10_std']:.4f}"
    for name in ("BENCHMARKS.md", "README.md"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            line = next(line for line in f if line.startswith("| ml-100k (leave-one-out) |"))
        assert f"**{expected} (" in line, (name, line)
