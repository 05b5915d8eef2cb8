"""``--export_atomic``: a small set as RecBole atomic files plus its soft labels, usable outside this package.

The end-to-end tests share three runs on the toy dataset (one real-data run between them):
Random-KD with top-k labels stored in the set (self-contained), the same users teacher-assisted,
and a FOSTER summary. RecBole's own loader and a stock RecBole SASRec read the exports; the
package reads them back with ``--method=eval --synthetic=<folder>``.
"""

import math
import os
import shutil

import pytest
import torch

from recbole_foster import compat  # importing recbole_foster applies the shims RecBole 1.2.1 needs today
from recbole_foster.distill.artifacts import (
    load_atomic_set, read_set, stored_labels_of, soft_labels_file, write_atomic_sequences,
)
from recbole_foster.methods.saved_set import check_saved_set, training_set_of
from recbole_foster.run import main, prepare, run
from recbole_foster.labels import compress, expand
from tests.toy_data import as_argv, toy_options

FAST = {"epochs": 1, "distilled_steps": 5, "distilled_eval_seeds": 1, "n_sequences": 4}
TOY_ITEMS = ["[PAD]"] + [f"i{i}" for i in range(1, 31)]  # the toy catalog's tokens (RecBole orders them its own way)


@pytest.fixture(scope="module")
def runs(toy_data_root, tiny_bert_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")

    def one(name, **overrides):
        options = toy_options(toy_data_root, tiny_bert_dir, tmp, output_dir=str(tmp / name),
                              export_atomic=str(tmp / "atomic" / name), **{**FAST, **overrides})
        return options, run(as_argv(options))

    return {"topk": one("topk", method="random_kd", label_storage="topk", label_topk=5),
            "code": one("code", method="random_kd", label_storage="text_code", label_topk=5),
            "teacher": one("teacher", method="random_kd"),
            "foster": one("foster", method="foster", label_topk=5, foster_compare_random="False"),
            "tmp": tmp}


def recbole_config(folder, tmp):
    """A stock RecBole config (SASRec, leave-one-out by time) reading the exported folder."""
    from recbole.config import Config

    config = {"data_path": os.path.dirname(folder), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
              "use_gpu": False, "checkpoint_dir": str(tmp / "recbole_saved"), "show_progress": False,
              "state": "WARNING", "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                                                "group_by": "user", "mode": "full"},
              "train_neg_sample_args": None, "loss_type": "CE", "hidden_size": 16, "inner_size": 32,
              "n_layers": 1, "n_heads": 1, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 20}
    return Config(model="SASRec", dataset=os.path.basename(folder), config_dict=config)


def sequences_by_user(dataset):
    """``{user token: item tokens ordered by time}`` of a RecBole dataset."""
    feat = dataset.inter_feat
    user_token, item_token = dataset.field2id_token[dataset.uid_field], dataset.field2id_token[dataset.iid_field]
    events = {}
    for user, item, time in zip(*(feat[field].tolist() for field in (dataset.uid_field, dataset.iid_field,
                                                                     dataset.time_field))):
        events.setdefault(str(user_token[user]), []).append((time, str(item_token[item])))
    return {user: [item for _, item in sorted(rows)] for user, rows in events.items()}


def prepared(options, **overrides):
    """A run's context up to its data and text embeddings (same data, config and RecBole id remapping)."""
    return prepare({**options, "export_atomic": "", "output_dir": options["output_dir"] + "-prep", **overrides})


@pytest.mark.slow
def test_export_round_trips_through_recboles_own_loader(runs):
    """RecBole's own dataset loader reads the exported folder and finds the set's windows, user by user;
    the sidecar is plain tensors whose labels are the set's stored ones, keyed by tokens."""
    from recbole.data import create_dataset

    options, kept = runs["topk"]
    folder = kept["exported_atomic"]
    assert kept["exported_soft_labels"] == soft_labels_file(folder) and kept["exported_labels"] == "soft"
    _, payload = read_set(kept["set_file"])
    tokens = prepared(options, method="random").dataset.field2id_token["item_id"]  # internal id -> token
    windows = {user: [tokens[i] for i in row if i > 0] for user, row in zip(kept["selected_users"],
                                                                            payload["item_seqs"].tolist())}
    loaded = create_dataset(recbole_config(folder, runs["tmp"]))
    assert sequences_by_user(loaded) == windows

    sidecar = torch.load(soft_labels_file(folder), weights_only=True)
    meta = sidecar["header"]
    assert meta["format"] == "recbole_foster.soft_labels/1" and meta["storage"] == "topk" and meta["k"] == 5
    assert set(meta["item_tokens"]) == set(TOY_ITEMS[1:]) and meta["user_tokens"] == kept["selected_users"]
    # label row r: user token, position in the .inter (its timestamp), the top-5 items as tokens
    users = [meta["user_tokens"][u] for u in sidecar["user"].tolist()]
    labelled = [(u, p) for u, p in zip(users, sidecar["position"].tolist())]
    assert labelled == [(u, p) for u, seq in windows.items() for p in range(1, len(seq))]
    assert "label_mask" not in payload  # the windows imply it: not stored
    mask = stored_labels_of(payload)["label_mask"]
    assert meta["n_labels"] == int(mask.sum())
    stored_tokens = [[tokens[i] for i in row] for row in payload["label_topk_items"].tolist()]
    assert [[meta["item_tokens"][i] for i in row] for row in sidecar["topk_items"].tolist()] == stored_tokens
    assert torch.equal(sidecar["topk_probs"], payload["label_topk_probs"])


@pytest.mark.slow
def test_stock_recbole_sasrec_trains_on_the_export(runs):
    """The exported atomic files are an ordinary RecBole dataset: RecBole's SASRec trains one epoch on
    them through RecBole's own data preparation and Trainer."""
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    with compat.keep_anomaly_detection():
        from recbole.model.sequential_recommender import SASRec

    config = recbole_config(runs["topk"][1]["exported_atomic"], runs["tmp"])
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    trainer = Trainer(config, SASRec(config, train_data.dataset).to(config["device"]))
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    metrics = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    assert metrics and all(math.isfinite(v) for v in metrics.values())


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["topk", "text_code"])
def test_eval_of_the_exported_folder_trains_on_the_same_set_as_its_set_file(runs, storage):
    """``--method=eval --synthetic=<exported folder>`` rebuilds the very training set of ``set.pt``
    (windows and top-k labels, or text codes decoded with the loaded dataset's text embeddings, in
    its ids), so it gives the same metrics; it is self-contained and its size is the .inter plus
    the sidecar."""
    options, kept = runs["code" if storage == "text_code" else storage]
    folder = kept["exported_atomic"]
    ctx = prepared(options, method="eval", synthetic=folder)
    from_folder = training_set_of(ctx, check_saved_set(ctx))[0]
    ctx.config["synthetic"] = kept["set_file"]
    from_file = training_set_of(ctx, check_saved_set(ctx))[0]
    assert torch.equal(from_folder.item_seqs, from_file.item_seqs)
    assert torch.equal(from_folder.target_log_probs, from_file.target_log_probs)

    again = run(as_argv({**options, "method": "eval", "synthetic": folder, "export_atomic": "",
                         "output_dir": str(runs["tmp"] / f"eval-{storage}")}))
    assert again["test"] == kept["test"] and again["valid"] == kept["valid"]
    assert again["family"] == "self-contained" and again["label_storage"] == storage
    name = os.path.basename(folder)
    files = [os.path.join(folder, f"{name}.inter"), soft_labels_file(folder)]
    assert again["artifact_bytes"] == sum(os.path.getsize(f) for f in files)
    assert set(again["artifact_bytes_parts"]) == {os.path.basename(f) for f in files}


@pytest.mark.slow
def test_text_code_labels_export_as_codes_with_the_text_embedding_they_decode_with(runs):
    sidecar = torch.load(soft_labels_file(runs["code"][1]["exported_atomic"]), weights_only=True)
    meta = sidecar["header"]
    assert meta["storage"] == "text_code" and meta["text_embedding_key"] and meta["k"] is None
    assert sidecar["codes"].dtype == torch.float16 and len(sidecar["codes"]) == meta["n_labels"]
    assert sidecar["decoder"].shape[0] == sidecar["codes"].shape[1]


@pytest.mark.slow
def test_teacher_assisted_set_exports_hard_sequences_only_and_says_so(runs):
    _, assisted = runs["teacher"]
    assert assisted["family"] == "teacher-assisted" and assisted["exported_soft_labels"] is None
    assert assisted["exported_labels"] == "none: teacher-assisted (label_storage=teacher)"
    assert not os.path.exists(soft_labels_file(assisted["exported_atomic"]))


@pytest.mark.slow
def test_distilled_set_exports_each_positions_distribution_as_its_label(runs):
    """A FOSTER summary exports its top-1 sequences and, as labels, the distribution of every
    position after the first (coupled: the same distribution the item is the top-1 of), truncated to
    top-``label_topk``; the folder then trains as hard sequences with those soft labels."""
    options, distilled = runs["foster"]
    folder = distilled["exported_atomic"]
    sidecar = torch.load(distilled["exported_soft_labels"], weights_only=True)
    meta = sidecar["header"]
    assert meta["storage"] == "topk" and meta["k"] == 5 and meta["n_labels"] == 4 * (6 - 1)
    rows = [line.split("\t") for line in open(os.path.join(folder, os.path.basename(folder) + ".inter"))][1:]
    item_at = {(user, int(float(t))): item for user, item, t in rows}
    for user, position, top in zip(sidecar["user"].tolist(), sidecar["position"].tolist(),
                                   sidecar["topk_items"][:, 0].tolist()):
        assert item_at[(meta["user_tokens"][user], position)] == meta["item_tokens"][top]
    probs = sidecar["topk_probs"].float()
    assert (probs[:, :-1] >= probs[:, 1:]).all() and (probs.sum(-1) <= 1.001).all()

    again = run(as_argv({**options, "method": "eval", "synthetic": folder, "export_atomic": "",
                         "output_dir": str(runs["tmp"] / "eval-foster")}))
    assert again["family"] == "self-contained" and again["label_storage"] == "topk"
    assert all(math.isfinite(v) for v in again["test"].values() if isinstance(v, float))


def test_an_export_without_labels_removes_a_stale_sidecar(tmp_path):
    items = torch.tensor([[1, 2, 3], [4, 5, 0]])
    log_probs = torch.log_softmax(torch.randn(2, 3, 31), -1)
    log_probs[..., 0] = -math.inf
    mask = torch.tensor([[False, True, True], [False, True, False]])
    labels = compress(log_probs, mask, "dense")
    write_atomic_sequences(str(tmp_path), "s", items, ["u1", "u2"], TOY_ITEMS, labels=labels)
    sidecar = torch.load(soft_labels_file(str(tmp_path / "s")), weights_only=True)
    assert sidecar["log_probs"].shape == (3, 30) and sidecar["position"].tolist() == [1, 2, 1]
    write_atomic_sequences(str(tmp_path), "s", items, ["u1", "u2"], TOY_ITEMS)
    assert not os.path.exists(soft_labels_file(str(tmp_path / "s")))


class Catalog:
    """What :func:`load_atomic_set` asks of a loaded RecBole dataset: its item tokens and ids."""

    iid_field, dataset_name = "item_id", "toy"

    def __init__(self, tokens, text_embedding_key=None):
        self.field2id_token = {"item_id": tokens}
        self.field2token_id = {"item_id": {t: i for i, t in enumerate(tokens)}}
        self.text_embedding_key = text_embedding_key


def test_text_code_labels_decode_by_text_whatever_the_loaders_ids_and_need_the_same_encoder(tmp_path):
    items = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    item_text = torch.randn(31, 6, generator=torch.Generator().manual_seed(0))
    item_text[0] = 0
    logits = torch.randn(2, 4, 3) @ torch.randn(3, 6) @ item_text.T
    logits[..., 0] = -math.inf
    mask = torch.tensor([[False, True, True, False], [False, True, False, False]])
    stored = compress(torch.log_softmax(logits, -1), mask, "text_code", 3, item_text)
    folder = write_atomic_sequences(str(tmp_path), "s", items, ["u1", "u2"], TOY_ITEMS, labels=stored,
                                    label_header={"text_encoder": "enc", "text_embedding_key": "key-a"})
    other_order = ["[PAD]"] + TOY_ITEMS[:0:-1]
    to_theirs = torch.tensor([0] + [other_order.index(t) for t in TOY_ITEMS[1:]])
    their_text = torch.zeros_like(item_text)
    their_text[to_theirs] = item_text  # the loader embeds the same texts under its own ids
    _, back, header = load_atomic_set(folder, Catalog(other_order, "key-a"), max_len=5)
    assert header["label_storage"] == "text_code"
    ours, theirs = expand(stored, 31, item_text)[1][mask], expand(back, 31, their_text)[1][back["label_mask"]]
    assert torch.allclose(theirs[:, to_theirs], ours)
    with pytest.raises(ValueError, match="--text_encoder"):
        load_atomic_set(folder, Catalog(TOY_ITEMS, "key-b"), max_len=5)


@pytest.mark.parametrize("storage", ["topk", "dense"])
def test_labels_are_keyed_by_tokens_not_ids(storage, tmp_path):
    """A loader whose ids order the catalog differently gets the same labels for the same items."""
    items = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    logits = torch.randn(2, 4, 31, generator=torch.Generator().manual_seed(0))
    logits[..., 0] = -math.inf
    mask = torch.tensor([[False, True, True, False], [False, True, False, False]])
    stored = compress(torch.log_softmax(logits, -1), mask, storage, 3)
    folder = write_atomic_sequences(str(tmp_path), "s", items, ["u1", "u2"], TOY_ITEMS, labels=stored)
    other_order = ["[PAD]"] + TOY_ITEMS[:0:-1]  # i30, i29, ..., i1
    seqs, back, header = load_atomic_set(folder, Catalog(other_order), max_len=5)
    assert header["label_storage"] == storage and header["n_sequences"] == 2
    to_theirs = torch.tensor([0] + [other_order.index(t) for t in TOY_ITEMS[1:]])  # exporter id -> loader id
    assert torch.equal(seqs[:, :4], to_theirs[items]) and not seqs[:, 4].any()
    # the loader's labels: index t labels position t + 1 (TeacherLabelledSequences' layout)
    expected = torch.zeros(2, 4, dtype=torch.bool)
    expected[:, :3] = mask[:, 1:]
    assert torch.equal(back["label_mask"], expected)
    ours, theirs = expand(stored, 31)[1][mask], expand(back, 31)[1][back["label_mask"]]
    assert torch.equal(theirs[:, to_theirs], ours)


# ----- bad input: exit code 2, one error line, nothing written -----
def _exported(folder, items, item_tokens=TOY_ITEMS, labels=True):
    """An exported folder ``folder/set/`` of ``items`` over ``item_tokens`` (with top-2 labels if ``labels``)."""
    stored = None
    if labels:
        log_probs = torch.log_softmax(torch.randn(len(items), items.size(1), len(item_tokens)), -1)
        log_probs[..., 0] = -math.inf
        mask = items > 0
        mask[:, 0] = False
        stored = compress(log_probs, mask, "topk", 2)
    users = [f"u{u + 1}" for u in range(len(items))]
    return write_atomic_sequences(str(folder), "set", items, users, item_tokens, labels=stored)


def no_inter_file(tmp):
    os.makedirs(tmp / "set")
    return str(tmp / "set")


def unknown_item_tokens(tmp):
    return _exported(tmp, torch.tensor([[1, 2, 3], [31, 32, 5]]), TOY_ITEMS + ["x1", "x2"], labels=False)


def labels_of_another_catalog(tmp):
    return _exported(tmp, torch.tensor([[1, 2, 3], [4, 5, 6]]), TOY_ITEMS + ["x1"])


def labels_of_another_set(tmp):
    folder = _exported(tmp, torch.tensor([[1, 2, 3], [4, 5, 6]]), labels=False)
    other = _exported(tmp / "other", torch.tensor([[7, 8, 9]]))
    shutil.copy(soft_labels_file(other), soft_labels_file(folder))
    return folder


def sidecar_not_plain_tensors(tmp):
    folder = _exported(tmp, torch.tensor([[1, 2, 3]]), labels=False)
    with open(soft_labels_file(folder), "wb") as f:
        f.write(b"garbage")
    return folder


BAD_FOLDERS = {  # make the folder: words its error line must contain
    no_inter_file: ["is a folder without set.inter", "--export_atomic"],
    unknown_item_tokens: ["set.inter has 2 item tokens (e.g. 'x1')", "does not know"],
    labels_of_another_catalog: ["labels items of another catalog", "31 items", "has 30", "1 item token (e.g. 'x1')"],
    labels_of_another_set: ["does not match the .inter beside it"],
    sidecar_not_plain_tensors: ["not a recbole_foster soft-labels file", "cannot be read as plain tensors"],
}


@pytest.mark.parametrize("make", list(BAD_FOLDERS), ids=lambda make: make.__name__)
def test_a_bad_exported_folder_is_one_clear_error(make, toy_data_root, tiny_bert_dir, tmp_path, capsys):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="eval", synthetic=make(tmp_path / "in"),
                          output_dir=str(tmp_path / "out" / "run"))
    assert main(as_argv(options)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(word in lines[0] for word in BAD_FOLDERS[make]), lines[0]
    assert not (tmp_path / "out").exists()  # nothing written


def test_text_codes_with_one_decoder_per_writer_round_trip_through_the_sidecar(tmp_path):
    """A DIET memory's labels (one decoder per stage, each label naming its own) survive the export."""
    items = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    mask = torch.tensor([[False, True, True, False], [False, True, False, False]])
    item_text = torch.randn(31, 6, generator=torch.Generator().manual_seed(1))
    item_text[0] = 0
    stored = {"label_mask": mask, "label_codes": torch.randn(3, 2).half(), "label_decoder": torch.randn(2, 2, 6).half(),
              "label_decoder_of": torch.tensor([0, 0, 1], dtype=torch.uint8)}
    folder = write_atomic_sequences(str(tmp_path), "s", items, ["u1", "u2"], TOY_ITEMS, labels=stored,
                                    label_header={"text_embedding_key": "key-a"})
    _, back, _ = load_atomic_set(folder, Catalog(TOY_ITEMS, "key-a"), max_len=5)
    ours, theirs = expand(stored, 31, item_text)[1][mask], expand(back, 31, item_text)[1][back["label_mask"]]
    assert torch.allclose(theirs, ours)
    one_decoder = expand({**stored, "label_decoder_of": torch.zeros(3, dtype=torch.uint8)}, 31, item_text)[1][mask]
    assert not torch.allclose(one_decoder, ours)  # the third label really is decoded by the second decoder
