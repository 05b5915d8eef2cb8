"""The text-embedding cache streams into a memory map and resumes a killed run at the next batch."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recbole_foster import text_embedding as te
from tests.tiny_bert import WORDS

TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + i % 6)) for i in range(23)]
BATCH = 4  # 6 batches, the last one short
KILL_AFTER = 3  # batches finished before the kill


def kwargs_for(tiny_bert_dir, cache_dir):
    return dict(text_encoder=tiny_bert_dir, text_fields=["title"], pooling="mean", max_tokens=16,
                batch_size=BATCH, cache_dir=str(cache_dir), show_progress=False)


def counting(monkeypatch):
    """Record the first text of every batch the encoder computes."""
    calls = []
    real = te._encode_batch
    monkeypatch.setattr(te, "_encode_batch", lambda texts, *a: calls.append(texts[0]) or real(texts, *a))
    return calls


# A separate process that embeds TEXTS and SIGKILLs itself when batch KILL_AFTER + 1 starts: a hard
# kill (no exception handler, no cleanup) right after KILL_AFTER batches were written.
KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from recbole_foster import text_embedding as te
    from tests.test_embedding_resume import TEXTS, KILL_AFTER, kwargs_for
    real, done = te._encode_batch, []
    def encode(*args):
        if len(done) == KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)
        done.append(1)
        return real(*args)
    te._encode_batch = encode
    te.get_text_embeddings(TEXTS, **kwargs_for({bert!r}, {cache!r}))
""")


def test_killed_run_resumes_at_the_next_batch_and_equals_an_uninterrupted_run(tiny_bert_dir, tmp_path, monkeypatch):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = KILLED_RUN.format(root=root, bert=tiny_bert_dir, cache=str(tmp_path / "cache"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    cached = sorted(os.listdir(tmp_path / "cache"))
    assert [name.split(".", 1)[1] for name in cached] == ["partial.npy", "progress.json"]  # no finished cache
    with open(tmp_path / "cache" / cached[1]) as f:
        assert json.load(f)["rows_done"] == KILL_AFTER * BATCH

    calls = counting(monkeypatch)
    resumed, _, info = te.get_text_embeddings(TEXTS, **kwargs_for(tiny_bert_dir, tmp_path / "cache"))
    assert calls == TEXTS[KILL_AFTER * BATCH::BATCH]  # only the remaining batches were computed
    assert info["resumed_at"] == KILL_AFTER * BATCH and not info["cache_hit"]
    assert sorted(os.listdir(tmp_path / "cache")) == sorted([cached[0].split(".")[0] + ext for ext in (".npy", ".json")])

    calls.clear()
    whole, _, info = te.get_text_embeddings(TEXTS, **kwargs_for(tiny_bert_dir, tmp_path / "uninterrupted"))
    assert len(calls) == 6 and info["resumed_at"] is None
    np.testing.assert_allclose(resumed, whole, rtol=0, atol=1e-6)
    assert np.abs(resumed[KILL_AFTER * BATCH - 1]).sum() > 0  # the rows of the killed run are really there


def test_cached_table_equals_a_one_shot_embedding_and_is_memory_mapped(tiny_bert_dir, tmp_path, monkeypatch):
    tokenizer, model, _ = te.load_text_encoder(tiny_bert_dir)
    one_shot = te.encode_texts(TEXTS, tokenizer, model, pooling="mean", max_tokens=16, batch_size=BATCH,
                               show_progress=False)
    table, _, info = te.get_text_embeddings(TEXTS, **kwargs_for(tiny_bert_dir, tmp_path))
    assert np.array_equal(np.asarray(table), one_shot) and not info["cache_hit"]
    calls = counting(monkeypatch)
    again, _, info = te.get_text_embeddings(TEXTS, **kwargs_for(tiny_bert_dir, tmp_path))
    assert info["cache_hit"] and not calls and isinstance(again, np.memmap) and np.array_equal(again, one_shot)
    # the finished cache is a plain .npy: readable without this module, as older versions wrote it
    assert np.array_equal(np.load(info["cache_file"]), one_shot)


def test_a_stale_partial_of_other_texts_is_not_resumed(tiny_bert_dir, tmp_path, monkeypatch):
    kwargs = kwargs_for(tiny_bert_dir, tmp_path)
    key = te.cache_key(os.path.abspath(tiny_bert_dir), ["title"], "mean", 16, TEXTS)
    base = os.path.join(tmp_path, key[:20])
    np.save(base + ".partial.npy", np.zeros((len(TEXTS), 32), dtype=np.float32))
    with open(base + ".progress.json", "w") as f:
        json.dump({"key": "another key", "rows_done": 20}, f)
    calls = counting(monkeypatch)
    table, _, info = te.get_text_embeddings(TEXTS, **kwargs)
    assert len(calls) == 6 and info["resumed_at"] is None and np.abs(table[:20]).sum() > 0


@pytest.mark.parametrize("pooling", ["max"])
def test_bad_pooling_fails_before_any_file_is_written(tiny_bert_dir, tmp_path, pooling):
    with pytest.raises(ValueError, match="text_pooling"):
        te.get_text_embeddings(TEXTS, **{**kwargs_for(tiny_bert_dir, tmp_path), "pooling": pooling})
    assert not os.path.exists(tmp_path) or not os.listdir(tmp_path)
