"""``label_storage: label_model``: one tiny model over the item texts labels a set's windows."""

import json
import math
import os

import pytest
import torch

from recbole_foster.cli import CLIError
from recbole_foster.distill.artifacts import read_set, save_windows, stored_labels_of
from recbole_foster.labels import compress, expand, get_storage, label_kl, storage_of, stored_bytes
from recbole_foster.labels.label_model import HISTORY, prefix_items
from recbole_foster.run import run
from tests.toy_data import as_argv, toy_options

N_ITEMS, DIM = 41, 12  # 40 items + padding


def teacher_like(seed=0, m=30, length=9):
    """Windows (right-padded), item texts and labels made by a hidden linear map of the last
    items' texts, as a text-based teacher's are (plus noise g cannot fit)."""
    gen = torch.Generator().manual_seed(seed)
    texts = torch.randn(N_ITEMS, DIM, generator=gen)
    texts[0] = 0
    seqs = torch.randint(1, N_ITEMS, (m, length), generator=gen)
    lengths = torch.randint(2, length + 1, (m,), generator=gen)
    seqs[torch.arange(length)[None, :] >= lengths[:, None]] = 0
    mask = (seqs[:, 1:] > 0) & (seqs[:, :-1] > 0)
    hidden = torch.randn(DIM, DIM, generator=gen) * 0.6
    state = texts[seqs[:, :-1]] @ hidden + 0.5 * texts[seqs[:, :-1]]
    logits = state @ texts[1:].T + 0.3 * torch.randn(m, length - 1, N_ITEMS - 1, generator=gen)
    log_probs = torch.cat([torch.full((m, length - 1, 1), -math.inf), torch.log_softmax(logits, -1)], -1)
    return seqs, mask, log_probs, texts


def test_stored_bytes_are_the_mask_and_g_in_float16():
    seqs, mask, log_probs, texts = teacher_like()
    for rank in (2, 5):
        stored = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=rank, steps=3)
        assert storage_of(stored).name == "label_model"
        g = HISTORY + 1 + DIM * rank + rank * DIM + DIM  # lags, scale, down, up, bias
        assert stored_bytes(stored) == get_storage("label_model").n_bytes(stored) == mask.numel() + 2 * g
        assert all(v.dtype == torch.float16 for k, v in stored.items() if k != "label_mask")


def test_a_set_file_leaves_out_the_mask_its_windows_imply(tmp_path):
    seqs, mask, log_probs, texts = teacher_like()
    stored = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=2, steps=3)
    path = save_windows(str(tmp_path / "set.pt"), seqs, {"label_storage": "label_model"}, stored)
    _, payload = read_set(path)
    assert "label_mask" not in payload
    back = stored_labels_of(payload)
    assert set(back) == set(stored) and all(torch.equal(back[k], stored[k]) for k in stored)
    with_mask = save_windows(str(tmp_path / "kept.pt"), seqs, {}, {**stored, "label_mask": mask.clone().fill_(True)})
    assert "label_mask" in read_set(with_mask)[1]  # a mask the windows do not imply is kept
    assert os.path.getsize(with_mask) >= os.path.getsize(path) + mask.numel()


def test_window_ids_take_two_bytes_while_the_catalog_allows(tmp_path):
    seqs = torch.randint(1, 30000, (50, 20))
    small = save_windows(str(tmp_path / "small.pt"), seqs, {})
    large = save_windows(str(tmp_path / "large.pt"), torch.cat([seqs[:, :-1], torch.full((50, 1), 40000)], 1), {})
    assert read_set(small)[1]["item_seqs"].dtype == torch.int16 and read_set(large)[1]["item_seqs"].dtype == torch.int32
    assert torch.equal(read_set(small)[1]["item_seqs"].long(), seqs)
    assert os.path.getsize(large) - os.path.getsize(small) >= 2 * seqs.numel() - 64  # the file's header aside


def test_padding_is_not_written_and_windows_read_back_the_same(tmp_path):
    """Right-padded windows (RecBole's layout) are stored as their real ids back to back: a set of
    mostly-padding windows costs its real ids, and reads back equal; full windows and other layouts
    are kept as they are."""
    full = torch.randint(1, 30000, (500, 20))
    short = full.clone()
    lengths = torch.randint(1, 21, (500,))
    short[torch.arange(20) >= lengths[:, None]] = 0
    whole, packed = save_windows(str(tmp_path / "full.pt"), full, {}), save_windows(str(tmp_path / "short.pt"), short, {})
    padding = int((short == 0).sum())
    assert os.path.getsize(whole) - os.path.getsize(packed) >= 2 * padding - 500 - 400  # a length byte each, two more tensor entries
    assert "window_length" not in read_set(whole)[0]  # nothing to leave out: the plain layout is smaller
    header, payload = read_set(packed)
    assert header["window_length"] == 20 and "item_ids" not in payload and "window_lengths" not in payload
    assert payload["item_seqs"].dtype == torch.int16 and torch.equal(payload["item_seqs"].long(), short)
    left = torch.flip(short, [1])  # left padding: not RecBole's layout, written as it is
    assert torch.equal(read_set(save_windows(str(tmp_path / "left.pt"), left, {}))[1]["item_seqs"].long(), left)


def test_ids_that_spell_a_zip_signature_do_not_make_a_set_a_zip(tmp_path):
    """Items 19280 and 1541 side by side are the bytes PK\\x05\\x06 (a zip's end record) in int16."""
    seqs = torch.randint(1, 30000, (200, 20))
    seqs[57, 4:6] = torch.tensor([19280, 1541])
    path = save_windows(str(tmp_path / "set.pt"), seqs, {})
    assert torch.equal(read_set(path)[1]["item_seqs"].long(), seqs)


def test_strided_windows_and_shared_label_tensors_save(tmp_path):
    seqs = torch.randint(1, 30000, (20, 12)).t()  # not contiguous
    probs = torch.rand(int(seqs[:, 1:].numel()), 3)
    path = save_windows(str(tmp_path / "set.pt"), seqs, {}, {"label_a": probs, "label_b": probs[:, :2]})
    header, payload = read_set(path)
    assert torch.equal(payload["item_seqs"].long(), seqs) and torch.equal(payload["label_b"], probs[:, :2])


def test_a_damaged_packed_set_is_refused_with_a_reason(tmp_path):
    import safetensors.torch

    from recbole_foster.distill.artifacts import WINDOWS_FORMAT, NotASet

    path = str(tmp_path / "set.pt")  # 3 windows of lengths 2, 1, 1 but only 2 ids
    safetensors.torch.save_file({"item_ids": torch.tensor([3, 4], dtype=torch.int16),
                                 "window_lengths": torch.tensor([2, 1, 1], dtype=torch.uint8)}, path,
                                metadata={"header": json.dumps({"format": WINDOWS_FORMAT, "window_length": 20})})
    with pytest.raises(NotASet, match="window lengths do not match its item ids"):
        read_set(path)


def test_a_window_set_is_a_safetensors_file_with_its_header_as_metadata(tmp_path):
    """Window sets are a few kB: the container must not be most of the file (a torch zip adds ~1.5 kB)."""
    import safetensors

    seqs = torch.randint(1, 30000, (20, 20))
    path = save_windows(str(tmp_path / "set.pt"), seqs, {"dataset": "toy"})
    with safetensors.safe_open(path, framework="pt") as f:
        assert json.loads(f.metadata()["header"])["dataset"] == "toy" and set(f.keys()) == {"item_seqs"}
    assert os.path.getsize(path) <= 2 * seqs.numel() + 300


def test_an_old_padded_window_file_still_loads(tmp_path):
    seqs = torch.tensor([[3, 4, 0], [5, 0, 0]])
    path = str(tmp_path / "old.pt")
    torch.save({"header": json.dumps({"format": "recbole_foster.windows/1"}), "item_seqs": seqs.int()}, path)
    assert torch.equal(read_set(path)[1]["item_seqs"].long(), seqs)


def test_the_fit_lowers_the_kl_below_an_untrained_and_the_least_squares_start():
    seqs, mask, log_probs, texts = teacher_like()
    fitted = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=4, steps=300)
    start = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=4, steps=0)
    untrained = {k: torch.zeros_like(v) if k != "label_mask" else v for k, v in fitted.items()}  # uniform
    kl = {name: label_kl(log_probs, expand(s, N_ITEMS, texts, sequences=seqs)[1], mask)
          for name, s in (("fitted", fitted), ("start", start), ("untrained", untrained))}
    assert kl["fitted"] < kl["start"] < kl["untrained"], kl
    assert kl["fitted"] < 0.6 * kl["untrained"], kl
    again = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=4, steps=300)
    assert all(torch.equal(fitted[k], again[k]) for k in fitted)  # seeded: a rerun stores the same g


def test_more_fit_windows_are_read_but_not_stored():
    seqs, mask, log_probs, texts = teacher_like()
    more, _, more_log_probs, _ = teacher_like(seed=0, m=60)  # same hidden map (same seed), more windows
    only = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=4, steps=50)
    both = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=4, steps=50,
                    fit_sequences=more, fit_log_probs=more_log_probs)
    assert stored_bytes(both) == stored_bytes(only) and torch.equal(both["label_mask"], mask)
    assert not torch.equal(both["label_model_down"], only["label_model_down"])


def test_expand_labels_every_labelled_position_from_its_prefix_and_never_padding():
    seqs, mask, log_probs, texts = teacher_like()
    stored = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=3, steps=20)
    back_mask, back = expand(stored, N_ITEMS, texts, sequences=seqs)
    assert back.shape == log_probs.shape and torch.equal(back_mask, mask)
    assert torch.isinf(back[..., 0]).all() and torch.isfinite(back[mask][:, 1:]).all()
    assert torch.allclose(back[mask][:, 1:].exp().sum(-1), torch.ones(int(mask.sum())), atol=1e-4)
    # a label reads the prefix's last items only: two windows ending alike get the same label
    items = prefix_items(seqs, mask)
    assert items.shape == (int(mask.sum()), HISTORY) and torch.equal(items[:, 0], seqs[:, :-1][mask])
    twin = seqs.clone()
    twin[:, 0] = torch.where(seqs[:, 0] > 0, (seqs[:, 0] % (N_ITEMS - 1)) + 1, 0)  # change the first item
    _, twin_back = expand(stored, N_ITEMS, texts, sequences=twin)
    late = mask.clone()
    late[:, :HISTORY] = False
    assert torch.allclose(twin_back[late], back[late]) and not torch.allclose(twin_back[mask], back[mask])


def test_it_needs_the_windows_and_the_texts():
    seqs, mask, log_probs, texts = teacher_like()
    with pytest.raises(ValueError, match="windows"):
        compress(log_probs, mask, "label_model", None, texts)
    with pytest.raises(ValueError, match="text embeddings"):
        compress(log_probs, mask, "label_model", None, None, sequences=seqs)
    with pytest.raises(ValueError, match="label_model_rank"):
        compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=DIM + 1)
    stored = compress(log_probs, mask, "label_model", None, texts, sequences=seqs, rank=2, steps=1)
    with pytest.raises(ValueError, match="windows"):
        expand(stored, N_ITEMS, texts)


FAST = {"epochs": 1, "distilled_steps": 5, "distilled_eval_seeds": 1, "n_sequences": 6}


def test_a_distilled_summary_cannot_keep_its_labels_as_a_label_model(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="foster", foster_targets="teacher",
                          label_storage="label_model")
    with pytest.raises(CLIError, match="label_model labels real windows"):
        run(as_argv(options))


@pytest.mark.slow
def test_random_kd_with_a_label_model_is_self_contained_and_evaluates_the_same(toy_data_root, tiny_bert_dir, tmp_path):
    """The set trains on g's labels of its windows; --method=eval on set.pt (and on its atomic
    export) rebuilds them with nothing but the file(s) and the dataset, and gets the same metrics."""
    common = {**FAST, "label_model_steps": "30", "label_model_rank": "2"}
    built = run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random_kd",
                                    label_storage="label_model", output_dir=str(tmp_path / "kd"),
                                    export_atomic=str(tmp_path / "atomic"), **common)))
    assert built["label_storage"] == "label_model" and built["family"] == "self-contained"
    assert built["stored_label_kl"] > 0
    header, payload = read_set(built["set_file"])
    assert header["label_storage"] == "label_model" and "label_model_down" in payload
    evaluated = {}
    for name, path in (("file", built["set_file"]), ("atomic", built["exported_atomic"])):
        evaluated[name] = run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="eval",
                                                  synthetic=path, output_dir=str(tmp_path / f"eval-{name}"),
                                                  anchor_dir=str(tmp_path / f"no-anchors-{name}"), **common)))
    for result in evaluated.values():  # no real-data run in its anchor dir: nothing but the set and the data
        assert result["label_storage"] == "label_model" and result["family"] == "self-contained"
        assert result["test"] == built["test"] and result["valid"] == built["valid"]
    assert os.path.isfile(built["exported_soft_labels"])
