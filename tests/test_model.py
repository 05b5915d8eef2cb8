"""TextItemEmbedding and TextSASRec: shapes, tied scoring, the soft input path, losses, init."""

import copy
import inspect
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from recbole.data import data_preparation
from recbole.model.layers import TransformerEncoder
from torch import nn

from recbole_foster import FosterConfig
from recbole_foster.compat import keep_anomaly_detection
from recbole_foster.dataset import create_dataset
from recbole_foster.text_embedding import attach_item_text_embeddings
from recbole_foster.model.text_item_embedding import TextItemEmbedding, copy_sharing_tables
from recbole_foster.model.text_sasrec import TextSASRec
from tests.toy_data import toy_options

with keep_anomaly_detection():  # RecBole's SINE would turn it on for the whole test session
    from recbole.model.sequential_recommender.gru4rec import GRU4Rec
    from recbole.model.sequential_recommender.sasrec import SASRec


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


def with_config(config, **overrides):
    """A copy of ``config`` with some keys changed (the module-scoped one stays untouched)."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        config[key] = value
    return config


def text_table(n_items=12, dim=6, seed=0):
    table = torch.randn(n_items, dim, generator=torch.Generator().manual_seed(seed))
    table[0] = 0.0  # padding row, as attach_item_text_embeddings makes it
    return table


class FakeCatalog:
    """Stands in for a RecBole dataset: ``n_items`` items with random text embeddings."""

    def __init__(self, n_items, dim):
        self.item_text_embeddings = text_table(n_items, dim)

    def num(self, field):
        return len(self.item_text_embeddings)


# ----- TextItemEmbedding on its own -----
def test_weight_is_every_item_representation():
    embedding = TextItemEmbedding(text_table(), 4)
    assert embedding.weight.shape == (12, 4)
    assert torch.equal(embedding.weight, embedding(torch.arange(12)))
    ids = torch.tensor([[3, 1, 0], [7, 7, 2]])
    assert torch.allclose(embedding(ids), embedding.weight[ids], atol=1e-6)  # other shapes: other rounding


def test_padding_id_embeds_to_the_projection_bias():
    # documented: the zero padding row goes through the projection, so id 0 -> bias (not zeros)
    embedding = TextItemEmbedding(text_table(), 4)
    nn.init.normal_(embedding.projection.bias)
    assert torch.equal(embedding(torch.tensor([0]))[0], embedding.projection.bias)
    assert torch.equal(embedding.weight[0], embedding.projection.bias)


def test_soft_embedding_of_one_hot_rows_is_the_item_embedding():
    embedding = TextItemEmbedding(text_table(), 4)
    subset = torch.tensor([0, 2, 5, 9])
    picks = torch.tensor([[1, 3, 0], [2, 2, 1]])
    one_hot = F.one_hot(picks, len(subset)).float()
    soft = embedding.soft(one_hot, subset)
    assert torch.equal(soft, embedding(subset)[picks])  # one-hot mixing is exact
    assert torch.allclose(soft, embedding(subset[picks]), atol=1e-6)  # (projecting other rows rounds differently)
    mixed = embedding.soft(torch.tensor([0.25, 0.75, 0.0, 0.0]), subset)
    assert torch.allclose(mixed, 0.25 * embedding(subset[0]) + 0.75 * embedding(subset[1]), atol=1e-6)


def test_table_is_frozen_and_out_of_the_state_dict():
    table = text_table()
    embedding = TextItemEmbedding(table, 4)
    assert set(embedding.state_dict()) == {"projection.weight", "projection.bias"}
    assert embedding.table.data_ptr() == table.data_ptr()  # shared, not copied
    embedding.weight.sum().backward()
    assert embedding.table.grad is None and not embedding.table.requires_grad
    assert embedding.projection.weight.grad is not None and embedding.projection.bias.grad is not None
    assert embedding.double().table.dtype == torch.float64  # a buffer: follows the module
    with pytest.raises(ValueError, match="table"):
        TextItemEmbedding(torch.zeros(5), 4)


def test_copies_share_the_frozen_table_and_nothing_else():
    model = nn.Sequential(TextItemEmbedding(text_table(), 4))
    twin = copy_sharing_tables(model)
    assert twin[0].table is model[0].table
    assert twin[0].projection.weight.data_ptr() != model[0].projection.weight.data_ptr()
    twin[0].projection.weight.data.add_(1.0)
    assert not torch.equal(twin[0].projection.weight, model[0].projection.weight)


def test_text_item_embedding_turns_recbole_gru4rec_into_a_text_model(toy):
    """The module is model-agnostic: swapping it into RecBole's GRU4Rec is enough."""
    config, dataset, _, batch = toy
    gru_config = dict(config.final_config_dict, embedding_size=16, hidden_size=16, num_layers=1,
                      dropout_prob=0.0, loss_type="CE")
    gru = GRU4Rec(gru_config, dataset)
    gru.item_embedding = TextItemEmbedding(dataset.item_text_embeddings, gru_config["embedding_size"])
    gru.eval()
    seq, seq_len = batch[gru.ITEM_SEQ], batch[gru.ITEM_SEQ_LEN]
    scores = gru.full_sort_predict(batch)
    assert scores.shape == (len(seq), dataset.item_num)
    assert torch.equal(scores, gru.forward(seq, seq_len) @ gru.item_embedding(torch.arange(dataset.item_num)).T)
    gru.calculate_loss(batch).backward()
    assert gru.item_embedding.projection.weight.grad is not None


# ----- TextSASRec -----
def test_text_sasrec_is_recbole_sasrec_with_the_text_item_embedding(toy):
    _, _, model, _ = toy
    assert isinstance(model, SASRec) and isinstance(model.item_embedding, TextItemEmbedding)
    assert type(model.trm_encoder) is TransformerEncoder
    # no layers or forward code of its own: SASRec's forward / scoring run on the text embedding
    for name in ("forward", "predict", "full_sort_predict", "_init_weights", "get_attention_mask", "gather_indexes"):
        assert getattr(TextSASRec, name) is getattr(SASRec, name), name
    source = inspect.getsource(TextSASRec)
    assert "TransformerEncoder(" not in source and "nn.Embedding(" not in source
    assert model.item_text_embeddings is model.item_embedding.table


def test_shapes_and_full_sort_scores_every_item(toy):
    config, dataset, model, batch = toy
    seq, seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    hidden = model.encode(seq)
    assert hidden.shape == (len(seq), seq.size(1), config["hidden_size"])
    assert model.forward(seq, seq_len).shape == (len(seq), config["hidden_size"])
    assert model.full_sort_predict(batch).shape == (len(seq), dataset.item_num)
    assert dataset.item_text_embeddings.shape[0] == dataset.item_num


def test_sasrec_forward_is_the_last_real_position_of_encode(toy):
    _, _, model, batch = toy
    seq, seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    last = model.encode(seq)[torch.arange(len(seq)), seq_len - 1]
    assert torch.equal(model.forward(seq, seq_len), last)


def test_scores_are_tied_to_the_input_item_representations(toy):
    _, dataset, model, batch = toy
    seq_output = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    reps = model.item_embedding.projection(model.item_text_embeddings)
    assert torch.equal(model.full_sort_predict(batch), model.scores(seq_output))
    assert torch.allclose(model.full_sort_predict(batch), seq_output @ reps.T, atol=1e-6)
    # the same representations embed the input: perturbing the projection changes both sides
    item = int(batch[model.ITEM_SEQ][0, 0])
    assert torch.allclose(model.item_representations(torch.tensor([item]))[0], reps[item])
    assert torch.equal(model.item_representations(), model.item_embedding.weight)
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
    hidden = model.encode_soft(probs, items)  # valid defaults to all positions
    assert torch.equal(hidden, model.encode_embeddings(mixed, torch.ones(1, 1, dtype=torch.bool)))


def test_loss_at_every_position_is_the_mean_next_item_cross_entropy(toy):
    _, _, model, batch = toy
    seq, seq_len, pos = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.POS_ITEM_ID]
    assert model.loss_all_positions is True  # the default (TextSASRec.yaml)
    hidden, reps = model.encode(seq), model.item_embedding.weight
    losses = []
    for b in range(len(seq)):
        for t in range(int(seq_len[b])):
            target = pos[b] if t == seq_len[b] - 1 else seq[b, t + 1]
            losses.append(F.cross_entropy(hidden[b, t] @ reps.T, target))
    assert torch.allclose(model.calculate_loss(batch), torch.stack(losses).mean(), atol=1e-6)


def test_loss_at_the_last_position_only_is_sasrec_ce(toy):
    config, dataset, model, batch = toy
    last_only = TextSASRec(with_config(config, loss_all_positions=False), dataset).eval()
    last_only.load_state_dict(model.state_dict())
    assert last_only.loss_all_positions is False
    seq_output = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    expected = F.cross_entropy(seq_output @ model.item_embedding.weight.T, batch[model.POS_ITEM_ID])
    assert torch.equal(last_only.calculate_loss(batch), expected)
    assert not torch.allclose(model.calculate_loss(batch), expected)  # the option changes the loss


def test_bce_losses_are_finite_at_every_and_at_the_last_position(toy):
    config, dataset, _, batch = toy
    for every in (True, False):
        model = TextSASRec(with_config(config, loss_type="BCE", loss_all_positions=every), dataset)
        loss = model.calculate_loss(batch)
        loss.backward()
        assert torch.isfinite(loss) and loss > 0 and model.item_embedding.projection.weight.grad is not None


def test_unsupported_options_are_rejected(toy):
    config, dataset, _, _ = toy
    with pytest.raises(ValueError, match="loss_type"):
        TextSASRec(with_config(config, loss_type="BPR"), dataset)  # needs pairwise data TextSASRec does not get
    with pytest.raises(ValueError, match="loss_all_positions"):
        TextSASRec(with_config(config, loss_all_positions="yes"), dataset)


def test_losses_are_finite_and_backpropagate(toy):
    config, dataset, model, batch = toy
    model.train()
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.item_embedding.projection.weight.grad is not None
    assert model.item_text_embeddings.grad is None  # the frozen table gets no gradient
    pos = batch[model.POS_ITEM_ID]
    seq_output = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    bce = model.bce_loss(seq_output, pos, torch.randint(1, dataset.item_num, (len(pos), 3)))
    assert torch.isfinite(bce) and bce > 0
    model.zero_grad()
    model.eval()


def test_text_table_is_kept_out_of_checkpoints(toy):
    _, _, model, _ = toy
    state = model.state_dict()
    assert "item_embedding.projection.weight" in state
    assert not any("table" in key or "text_embeddings" in key for key in state)
    assert all(b is not model.item_text_embeddings for b in state.values())


def test_checkpoints_with_the_old_projection_name_still_load(toy):
    config, dataset, model, _ = toy
    old_style = {k.replace("item_embedding.projection.", "text_projection."): v for k, v in model.state_dict().items()}
    assert "text_projection.weight" in old_style
    fresh = TextSASRec(config, dataset)
    fresh.load_state_dict(old_style)  # strict
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())


def test_initial_weights_are_those_of_the_original_text_sasrec(toy):
    """Same seed, same weights as the TextSASRec that built its own layers (benchmark numbers
    depend on it): it drew the default inits of Linear(d, H), Embedding(L, H) and one transformer
    layer, then SASRec's _init_weights in that order; the global RNG ends in the same state."""
    config, dataset, _, _ = toy
    config = with_config(config, n_layers=2, n_heads=2)
    hidden = config["hidden_size"]
    torch.manual_seed(123)
    model = TextSASRec(config, dataset)
    after_model = torch.get_rng_state()
    torch.manual_seed(123)
    reference = nn.ModuleDict({
        "item_embedding": nn.ModuleDict({"projection": nn.Linear(dataset.item_text_embeddings.size(1), hidden)}),
        "position_embedding": nn.Embedding(config["MAX_ITEM_LIST_LENGTH"], hidden),
        "trm_encoder": TransformerEncoder(config["n_layers"], config["n_heads"], hidden, config["inner_size"]),
        "LayerNorm": nn.LayerNorm(hidden),
    })
    reference.apply(model._init_weights)
    assert torch.equal(torch.get_rng_state(), after_model)
    expected = reference.state_dict()
    assert set(expected) == set(model.state_dict())
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_initial_weights_do_not_depend_on_the_catalogue_size(toy):
    config, _, _, _ = toy
    states = []
    for n_items in (10, 5000):
        torch.manual_seed(7)
        model = TextSASRec(config, FakeCatalog(n_items, dim=8))
        states.append((model.state_dict(), torch.get_rng_state()))
    (a, rng_a), (b, rng_b) = states
    assert torch.equal(rng_a, rng_b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_importing_the_model_leaves_autograd_anomaly_detection_off():
    # RecBole's SINE module switches it on for the whole process when SASRec's package is imported
    for code in ("import torch, recbole_foster.model.text_sasrec; assert not torch.is_anomaly_enabled()",
                 "import torch, recbole_foster; recbole_foster.get_model('SASRec'); assert not torch.is_anomaly_enabled()"):
        subprocess.run([sys.executable, "-c", code], check=True)


def test_bce_loss_type_trains_through_recbole(toy_data_root, tiny_bert_dir, tmp_path):
    from recbole_foster.run import run
    from tests.toy_data import as_argv

    results = run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full", loss_type="BCE", epochs=1)))
    assert results["config"]["loss_type"] == "BCE"
    assert 0.0 <= results["test"]["ndcg@10"] <= 1.0
