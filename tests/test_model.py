"""TextSASRec: shapes, tied scoring, the soft input path, losses."""

import pytest
import torch
from recbole.data import data_preparation

from recbole_foster import FosterConfig
from recbole_foster.data import attach_item_text_embeddings, create_dataset
from recbole_foster.model.text_sasrec import TextSASRec
from tests.toy_data import toy_options


@pytest.fixture(scope="module")
def toy(toy_data_root, tiny_bert_dir, tmp_path_factory):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path_factory.mktemp("model"))
    options.pop("output_dir")
    config = FosterConfig(model="TextSASRec", dataset=options.pop("dataset"), config_dict=options)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    attach_item_text_embeddings(config, train.dataset, show_progress=False)
    torch.manual_seed(0)
    model = TextSASRec(config, train.dataset).eval()
    batch = next(iter(train))
    return config, train.dataset, model, batch


def test_shapes_and_full_sort_scores_every_item(toy):
    config, dataset, model, batch = toy
    seq, seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    hidden = model.encode(seq)
    assert hidden.shape == (len(seq), seq.size(1), config["hidden_size"])
    assert model.forward(seq, seq_len).shape == (len(seq), config["hidden_size"])
    assert model.full_sort_predict(batch).shape == (len(seq), dataset.item_num)
    assert dataset.item_text_embeddings.shape[0] == dataset.item_num


def test_scores_are_tied_to_the_input_item_representations(toy):
    _, dataset, model, batch = toy
    seq_output = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    reps = model.text_projection(model.item_text_embeddings)
    assert torch.allclose(model.full_sort_predict(batch), seq_output @ reps.T, atol=1e-6)
    # the same representations embed the input: perturbing the projection changes both sides
    item = int(batch[model.ITEM_SEQ][0, 0])
    assert torch.allclose(model.item_representations(torch.tensor([item]))[0], reps[item])
    assert not any(p.requires_grad for p in [model.item_text_embeddings])  # frozen table


def test_soft_path_equals_hard_path_exactly_for_one_hot_inputs(toy):
    _, dataset, model, batch = toy
    seq = batch[model.ITEM_SEQ]
    subset = torch.unique(torch.cat([seq.flatten(), torch.tensor([0, 1, 2])]))
    position = {int(i): k for k, i in enumerate(subset)}
    one_hot = torch.zeros(seq.shape + (len(subset),))
    for b in range(seq.size(0)):
        for t in range(seq.size(1)):
            one_hot[b, t, position[int(seq[b, t])]] = 1.0
    hard = model.encode(seq)
    soft = model.encode_soft(one_hot, subset, valid=seq > 0)
    assert torch.equal(hard, soft)


def test_soft_path_mixes_item_representations(toy):
    _, _, model, _ = toy
    items = torch.tensor([1, 2])
    probs = torch.tensor([[[0.5, 0.5]]])
    mixed = probs @ model.item_representations(items)
    assert torch.allclose(mixed[0, 0], model.item_representations(items).mean(0))


def test_losses_are_finite_and_backpropagate(toy):
    config, dataset, model, batch = toy
    model.train()
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.text_projection.weight.grad is not None
    pos = batch[model.POS_ITEM_ID]
    seq_output = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    bce = model.bce_loss(seq_output, pos, torch.randint(1, dataset.item_num, (len(pos), 3)))
    assert torch.isfinite(bce) and bce > 0
    model.eval()


def test_bce_loss_type_trains_through_recbole(toy_data_root, tiny_bert_dir, tmp_path):
    from recbole_foster.run import run
    from tests.toy_data import as_argv

    results = run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full", loss_type="BCE", epochs=1)))
    assert results["config"]["loss_type"] == "BCE"
    assert 0.0 <= results["test"]["ndcg@10"] <= 1.0
