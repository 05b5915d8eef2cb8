"""Stored labels, set families and sizes, and training from a saved set without the teacher."""

import math
import os
import shutil

import pytest
import torch

from recbole_foster.distill.artifacts import NotASet, read_set
from recbole_foster.methods.generation import teacher_generated_sequences
from recbole_foster.model.text_sasrec import TextSASRec
from recbole_foster.run import run
from recbole_foster.labels import code_rank, compress, expand, stored_bytes
from tests.test_distill import FakeCatalog
from tests.toy_data import as_argv, toy_options


TINY = {"n_layers": 1, "n_heads": 1, "hidden_size": 8, "inner_size": 16, "hidden_dropout_prob": 0.0,
        "attn_dropout_prob": 0.0, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02,
        "loss_type": "CE", "loss_all_positions": True, "MAX_ITEM_LIST_LENGTH": 6, "ITEM_ID_FIELD": "item_id",
        "LIST_SUFFIX": "_list", "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_",
        "USER_ID_FIELD": "user_id", "device": "cpu"}


def tiny_model(seed, n_items=30):
    torch.manual_seed(seed)
    return TextSASRec(TINY, FakeCatalog(n_items))


def random_labels(m=3, n=5, n_items=12, seed=0):
    logits = torch.randn(m, n, n_items, generator=torch.Generator().manual_seed(seed)) * 3
    logits[..., 0] = -math.inf
    mask = torch.ones(m, n, dtype=torch.bool)
    mask[:, 0] = False
    mask[1, 3:] = False
    return torch.log_softmax(logits, -1), mask


def test_dense_storage_round_trips_exactly():
    log_probs, mask = random_labels()
    stored = compress(log_probs, mask, "dense")
    back_mask, back = expand(stored, log_probs.size(-1))
    assert torch.equal(back_mask, mask)
    assert torch.equal(back[mask], log_probs[mask])
    assert stored_bytes(stored) == mask.sum() * 12 * 4 + mask.numel()


def test_topk_keeps_the_k_largest_and_spreads_the_rest_evenly():
    log_probs, mask = random_labels()
    k = 3
    stored = compress(log_probs, mask, "topk", k)
    _, back = expand(stored, 12)
    probs, back_probs = log_probs[mask].exp(), back[mask].exp()
    assert torch.allclose(back_probs.sum(-1), torch.ones(len(probs)), atol=1e-3)  # distributions
    assert torch.all(back_probs[:, 0] == 0)  # padding never gets mass
    top = probs.topk(k, -1)
    assert torch.allclose(back_probs.gather(1, top.indices), top.values, atol=1e-3)  # float16
    rest = torch.ones_like(back_probs, dtype=torch.bool)
    rest.scatter_(1, top.indices, False)
    rest[:, 0] = False
    others = back_probs[rest].reshape(len(probs), -1)
    expected = (1 - top.values.sum(-1, keepdim=True)) / (12 - 1 - k)
    assert torch.allclose(others, expected.expand_as(others), atol=1e-3)
    assert stored_bytes(stored) == mask.sum() * k * (2 + 4) + mask.numel()


def text_linear_labels(n_items=60, dim=8, rank=2, seed=0):
    """Labels of a teacher whose scores are linear in the item texts (as a text-based model's are):
    ``(log_probs (4, 6, n_items), mask, item_text (n_items, dim) with a zero padding row)``."""
    g = torch.Generator().manual_seed(seed)
    item_text = torch.randn(n_items, dim, generator=g)
    item_text[0] = 0
    directions = torch.randn(4, 6, rank, generator=g) @ torch.randn(rank, dim, generator=g)
    logits = 1.5 * directions @ item_text.T
    logits[..., 0] = -math.inf
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, 0] = False
    mask[2, 4:] = False
    return torch.log_softmax(logits, -1), mask, item_text


def kl_per_label(log_probs, back, mask):
    p = log_probs[mask][:, 1:]
    return (p.exp() * (p - back[mask][:, 1:])).sum(-1)


def test_text_code_keeps_a_text_linear_teachers_whole_distribution_within_the_topk_budget():
    log_probs, mask, item_text = text_linear_labels()
    k = 3
    code = compress(log_probs, mask, "text_code", k, item_text)
    topk = compress(log_probs, mask, "topk", k)
    assert code["label_codes"].dtype == torch.float16 and code["label_codes"].shape[0] == int(mask.sum())
    assert stored_bytes(code) <= stored_bytes(topk)  # equal storage by construction
    back_mask, back = expand(code, log_probs.size(-1), item_text)
    assert torch.equal(back_mask, mask) and torch.all(back[mask][:, 0] == -math.inf)
    assert torch.allclose(back[mask].exp().sum(-1), torch.ones(int(mask.sum())), atol=1e-4)
    code_kl = kl_per_label(log_probs, back, mask)
    topk_kl = kl_per_label(log_probs, expand(topk, log_probs.size(-1))[1], mask)
    assert code_kl.max() < 0.01 and code_kl.mean() < topk_kl.mean() / 10


def test_text_code_fit_is_deterministic():
    """A rerun of a set gives the same codes (torch.linalg.lstsq's default CPU driver does not)."""
    g = torch.Generator().manual_seed(0)
    item_text = torch.randn(400, 64, generator=g)
    item_text[0] = 0
    logits = torch.randn(40, 8, generator=g) @ torch.randn(8, 64, generator=g) @ item_text.T * 0.2
    logits[:, 0] = -math.inf
    log_probs, mask = torch.log_softmax(logits, -1).reshape(4, 10, -1), torch.ones(4, 10, dtype=torch.bool)
    first, again = (compress(log_probs, mask, "text_code", 5, item_text) for _ in range(2))
    assert all(torch.equal(first[key], again[key]) for key in first)


def test_text_code_rank_is_the_largest_that_fits_the_topk_bytes():
    for positions, dim, k in [(213, 384, 10), (980, 384, 10), (5, 384, 1), (40, 8, 3)]:
        r = code_rank(positions, dim, k)
        budget = positions * k * (2 + 4)
        assert r >= 1 and (r == 1 or 2 * r * (positions + dim) <= budget)
        assert 2 * (r + 1) * (positions + dim) > budget


def test_text_code_needs_the_item_texts_to_be_written_and_read():
    log_probs, mask, item_text = text_linear_labels()
    with pytest.raises(ValueError, match="item text embeddings"):
        compress(log_probs, mask, "text_code", 3)
    stored = compress(log_probs, mask, "text_code", 3, item_text)
    with pytest.raises(ValueError, match="item text embeddings"):
        expand(stored, log_probs.size(-1))


def test_teacher_storage_stores_nothing_and_bad_settings_are_refused():
    log_probs, mask = random_labels()
    assert compress(log_probs, mask, "teacher") == {}
    with pytest.raises(ValueError, match="label_storage"):
        compress(log_probs, mask, "sparse")
    with pytest.raises(ValueError, match="label_topk"):
        compress(log_probs, mask, "topk", 11)


def test_teacher_generated_sequences_start_from_the_given_items_and_never_repeat():
    teacher = tiny_model(0)
    first = torch.tensor([3, 7, 11])
    seqs = teacher_generated_sequences(teacher, first, 6, 1.0, torch.Generator().manual_seed(1))
    assert seqs.shape == (3, 6) and torch.equal(seqs[:, 0], first)
    assert (seqs > 0).all() and all(len(set(row.tolist())) == 6 for row in seqs)
    again = teacher_generated_sequences(teacher, first, 6, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(seqs, again)  # seeded


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["topk", "text_code"])
def test_self_contained_set_trains_without_the_teacher_and_reports_its_family(storage, toy_data_root, tiny_bert_dir,
                                                                               tmp_path):
    base = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random_kd", distilled_eval_seeds=1)
    kept = run(as_argv({**base, "label_storage": storage, "label_topk": 5, "output_dir": str(tmp_path / "kept")}))
    assisted = run(as_argv({**base, "output_dir": str(tmp_path / "teacher")}))
    assert kept["family"] == "self-contained" and assisted["family"] == "teacher-assisted"
    assert assisted["stored_label_kl"] is None  # nothing stored
    # top-k loses part of each label; a small text teacher's labels fit its text codes to rounding
    assert kept["stored_label_kl"] > 0 if storage == "topk" else abs(kept["stored_label_kl"]) < 1e-3
    assert assisted["artifact_bytes"] == (os.path.getsize(assisted["set_file"])
                                          + assisted["artifact_bytes_parts"]["teacher_checkpoint"])
    assert kept["artifact_bytes"] == os.path.getsize(kept["set_file"])
    header, _ = read_set(kept["set_file"])
    assert header["label_storage"] == storage and header["format"] == "recbole_foster.windows/2"
    assert "selected_users" not in header and len(kept["selected_users"]) > 0  # provenance: in results.json

    # Without the real-data run on disk (teacher and anchors gone) the self-contained set still trains,
    # with the same metrics; the teacher-assisted one is refused before anything is trained.
    shutil.rmtree(base["anchor_dir"])
    again = run(as_argv({**base, "method": "eval", "synthetic": kept["set_file"], "output_dir": str(tmp_path / "e")}))
    assert again["test"] == kept["test"] and again["family"] == "self-contained"
    assert not os.path.exists(base["anchor_dir"])  # nothing was trained for it


@pytest.mark.slow
def test_teacher_labelled_summary_with_stored_labels_is_self_contained(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="foster", foster_targets="teacher",
                          label_storage="dense", foster_compare_random="False", distilled_eval_seeds=1)
    first = run(as_argv(options))
    assert first["family"] == "self-contained" and first["label_storage"] == "dense"
    header, payload = read_set(first["synthetic"])
    assert "item_factor" not in payload and header["text_embedding_key"]  # referenced, not copied
    shutil.rmtree(options["anchor_dir"])
    again = run(as_argv({**options, "method": "eval", "synthetic": first["synthetic"],
                         "output_dir": str(tmp_path / "eval")}))
    assert again["test"] == first["test"]


def test_a_file_that_is_not_a_set_is_named_as_such(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(NotASet, match="not a recbole_foster set"):
        read_set(str(path))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(NotASet, match="no header"):
        read_set(str(tmp_path / "other.pt"))


def test_paper_compatible_student_takes_only_the_teachers_embeddings():
    from recbole_foster.evaluation import copy_teacher_embeddings

    teacher, student = tiny_model(0), tiny_model(1)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    taken = copy_teacher_embeddings(student, teacher)
    assert taken == ["item_embedding.projection.bias", "item_embedding.projection.weight", "position_embedding.weight"]
    own, theirs = student.state_dict(), teacher.state_dict()
    for key in own:
        assert torch.equal(own[key], theirs[key] if key in taken else before[key]), key
    assert not torch.equal(before["position_embedding.weight"], theirs["position_embedding.weight"])


@pytest.mark.slow
def test_a_coreset_with_teacher_labels_is_judged_like_random_kd(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="kcenter", coreset_labels="teacher",
                          label_storage="topk", label_topk=5, distilled_eval_seeds=1)
    result = run(as_argv(options))
    assert set(result["table"]) == {"Full", "K-Center-KD-4"}
    assert result["family"] == "self-contained" and result["label_storage"] == "topk"
    _, payload = read_set(result["set_file"])
    assert payload["label_topk_probs"].shape[-1] == 5
