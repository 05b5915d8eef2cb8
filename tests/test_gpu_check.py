"""benchmarks/gpu_check.py on the CPU and the toy data, so the GPU check cannot rot between GPU runs.

Not marked slow on purpose: every method end to end at tiny settings takes seconds.
"""

import json
import os
import sys

import pytest

from recbole_foster.methods import METHODS

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import gpu_check  # noqa: E402  (benchmarks/gpu_check.py)

TOY = {"dataset": "toy", "text_fields": "['title']", "MAX_ITEM_LIST_LENGTH": 6, "foster_seq_len": 6,
       "load_col": "{'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'title']}"}


def check_argv(toy_data_root, tiny_bert_dir, tmp_path, *extra):
    options = {**TOY, "data_path": toy_data_root, "text_encoder": tiny_bert_dir,
               "text_cache_dir": tmp_path / "text_cache"}
    return [f"--{k}={v}" for k, v in options.items()] + ["--device=cpu", f"--out={tmp_path / 'speed'}",
                                                           f"--work_dir={tmp_path / 'work'}", *extra]


def test_every_method_runs_on_the_cpu_and_is_timed(toy_data_root, tiny_bert_dir, tmp_path):
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    assert gpu_check.main(check_argv(toy_data_root, tiny_bert_dir, tmp_path)) == 0
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible  # RecBole's gpu_id="" does not outlive the check
    with open(tmp_path / "speed" / "gpu-check-cpu.json") as f:
        summary = json.load(f)
    rows = summary["cases"]
    assert summary["all_ok"] and summary["problems"] == [] and summary["device"] == "cpu"
    assert summary["command"].startswith("python benchmarks/gpu_check.py ")
    built_in = {name for name, m in METHODS.items() if type(m).__module__.startswith("recbole_foster.")}
    assert {row["method"] for row in rows.values()} == built_in  # every method of the package ran (a test may register others)
    assert {f"random_kd-{s}" for s in gpu_check.STORAGES} <= set(rows)  # and every label storage
    for name, row in rows.items():
        assert row["status"] == "ok" and row["device"] == "cpu", name
        assert row["timings"]["total"] > 0 and row["peak_mem_mb"] > 0, name
        assert set(row["peak_mem_mb_per_phase"]) >= {"data"}, name
        assert row["peak_mem_kind"] == "resident set (VmHWM)"
    assert "distill" in rows["foster"]["timings"] and "distill" in rows["td3"]["timings"]
    exported = tmp_path / "work" / "atomic"
    assert any(f.endswith(".inter") for _, _, files in os.walk(exported) for f in files)  # --export_atomic
    assert os.path.isfile(tmp_path / "speed" / "gpu-check-cpu.png")


def test_a_failed_method_fails_the_check(toy_data_root, tiny_bert_dir, tmp_path):
    # eval alone has no set to read: the check says so and exits 1, but still writes its JSON
    assert gpu_check.main(check_argv(toy_data_root, tiny_bert_dir, tmp_path, "--only=eval")) == 1
    summary = json.load(open(tmp_path / "speed" / "gpu-check-cpu.json"))
    assert not summary["all_ok"] and summary["problems"] == ["eval: no set to read: run the foster case first"]


def test_a_run_on_another_device_is_a_problem():
    rows = {"full": {"status": "ok", "device": "cpu"}, "td3": {"status": "ok", "device": "cuda"}}
    assert gpu_check.check(rows, "cuda") == ["full: ran on cpu, not cuda"]
    assert gpu_check.check(rows, "cpu") == ["td3: ran on cuda, not cpu"]
    # RecBole 1.2.1 reads gpu_id, not use_gpu: an empty gpu_id is what keeps a GPU machine's run on the CPU
    assert gpu_check.device_options("cpu") == {"use_gpu": False, "gpu_id": ""}


@pytest.mark.parametrize("argv, message", [(["--device=cuda:1"], "--device must be cpu or cuda"),
                                           (["--only=nope"], "--only: unknown case")])
def test_bad_options_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_training_set_goes_to_the_device_once_and_reads_its_batches_there():
    import torch

    from recbole_foster.training_sets import _rows_on

    table, cache = torch.arange(12.0).reshape(4, 3), {}
    assert torch.equal(_rows_on(cache, table, [2, 0], torch.device("cpu")), table[[2, 0]]) and not cache
    device = torch.device("meta")  # another device than the host's, on any machine
    batch = _rows_on(cache, table, torch.tensor([2, 0]), device)
    copy = cache[device]
    assert batch.device == device and batch.shape == (2, 3) and copy.shape == table.shape
    _rows_on(cache, table, [1], device)
    assert cache[device] is copy  # copied once, not per step
