"""A FOSTER summary saved at reduced precision: fewer bytes, numbers close to fp32, loads back."""

import os

import pytest
import torch

from recbole_foster.distill.artifacts import load_synthetic, read_set, save_synthetic
from recbole_foster.distill.synthetic import SyntheticSummary
from recbole_foster.run import run
from tests.toy_data import as_argv, toy_options


def _summary(n=100, seq_len=20, rank=16, n_items=50, dim=256):  # text embeddings: 384-768
    torch.manual_seed(0)
    item_factor = torch.nn.functional.normalize(torch.randn(n_items, dim), dim=-1)
    summary = SyntheticSummary(item_factor, n, seq_len, rank, rank)
    with torch.no_grad():  # trained-looking factors, not the small init
        summary.user_factor.normal_()
        summary.time_factor.normal_()
    return summary


def _save(tmp_path, summary, precision, name=None):
    path = str(tmp_path / f"{name or precision}.pt")
    save_synthetic(path, summary, {"label_mode": "coupled"}, standalone=True, precision=precision)
    return path


def test_fp16_and_int8_halve_and_quarter_the_bytes_and_round_trip_closely(tmp_path):
    summary = _summary()
    sizes, loaded = {}, {}
    for precision in ("fp32", "fp16", "int8"):
        path = _save(tmp_path, summary, precision)
        sizes[precision] = os.path.getsize(path)
        loaded[precision], _, header = load_synthetic(path)
        assert header["precision"] == precision
    assert 0.45 < sizes["fp16"] / sizes["fp32"] < 0.55
    assert 0.22 < sizes["int8"] / sizes["fp32"] < 0.32
    for name in ("user_factor", "time_factor", "core", "item_factor"):
        exact = getattr(summary, name).detach()
        assert torch.equal(getattr(loaded["fp32"], name), exact)
        span = float(exact.max() - exact.min())
        assert float((getattr(loaded["fp16"], name).detach() - exact).abs().max()) < 1e-3 * span
        int8_error = float((getattr(loaded["int8"], name).detach() - exact).abs().max())
        assert 0 < int8_error <= span / 255 / 2 + 1e-6  # half a quantisation step of the widest range
    with torch.no_grad():  # the (m, n, d) codes every item is scored against: within 2% of fp32's
        exact = summary.sequence_codes()
        assert float((loaded["int8"].sequence_codes() - exact).norm() / exact.norm()) < 0.02


def test_smaller_ranks_and_shorter_sequences_take_fewer_bytes(tmp_path):
    full = os.path.getsize(_save(tmp_path, _summary(rank=16), "fp32", "r16"))
    low_rank = os.path.getsize(_save(tmp_path, _summary(rank=4), "fp32", "r4"))
    short = os.path.getsize(_save(tmp_path, _summary(seq_len=5), "fp32", "len5"))
    assert low_rank < full / 3 and short < full


def test_an_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="set_precision"):
        _save(tmp_path, _summary(), "int4")


@pytest.mark.slow
def test_an_int8_foster_set_is_judged_as_stored_and_evaluates_the_same(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="foster", foster_compare_random="False",
                          distilled_eval_seeds=1, set_precision="int8")
    first = run(as_argv(options))
    header, payload = read_set(first["synthetic"])
    assert header["precision"] == "int8" and payload["core"].dtype == torch.int8
    assert first["artifact_bytes"] == os.path.getsize(first["synthetic"])
    again = run(as_argv({**options, "method": "eval", "synthetic": first["synthetic"],
                         "output_dir": str(tmp_path / "eval")}))
    assert again["test"] == first["test"]
