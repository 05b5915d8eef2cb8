"""Every supported RecBole model (ID and text forms) trains on small sets (issue 16).

``recbole_foster.model.students`` reads the layers RecBole's classes own; these tests check that
what it computes is the models' own computation (``forward`` at the last position, BERT4Rec's
bidirectional output), that a one-hot soft window is the hard window, and that each model learns
from a hard, a teacher-labelled and a soft set.
"""

import pytest
import torch
import torch.nn.functional as F
from recbole.data import data_preparation

from recbole_foster import FosterConfig
from recbole_foster.dataset import create_dataset
from recbole_foster.model import students
from recbole_foster.run import main
from recbole_foster.text_embedding import attach_item_text_embeddings
from recbole_foster.training_sets import HardSequences, SoftSequences, TeacherLabelledSequences
from tests.toy_data import as_argv, toy_options

MODELS = ["TextSASRec", "TextGRU4Rec", "TextNARM", "TextBERT4Rec", "SASRec", "GRU4Rec", "NARM", "BERT4Rec"]


@pytest.fixture(scope="module")
def build(toy_data_root, tiny_bert_dir, tmp_path_factory):
    """``build(name)`` -> (model in eval mode, its training dataset), one dataset per model."""
    folder = tmp_path_factory.mktemp("students")
    made = {}

    def make(name):
        if name not in made:
            options = toy_options(toy_data_root, tiny_bert_dir, folder)
            options.pop("output_dir")
            config = FosterConfig(model=name, dataset=options.pop("dataset"), config_dict=options)
            dataset = create_dataset(config)
            train, _, _ = data_preparation(config, dataset)
            if getattr(config.model_class, "requires_item_text", False):
                attach_item_text_embeddings(config, train.dataset, show_progress=False)
            made[name] = (config, train.dataset)
        config, dataset = made[name]
        torch.manual_seed(0)
        return config.model_class(config, dataset).eval(), dataset

    return make


def windows(dataset, m=3, length=6, seed=0):
    """(m, length) windows of real items, no padding."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, dataset.item_num, (m, length), generator=generator)


@pytest.mark.parametrize("name", MODELS)
def test_every_position_is_the_models_own_computation(name, build):
    """Causal models: position t of ``encode`` is ``forward`` on the prefix 0..t. BERT4Rec:
    ``encode_embeddings`` is its bidirectional ``forward``."""
    model, dataset = build(name)
    seqs = windows(dataset)
    with torch.no_grad():
        if not students.is_causal(model):
            hidden = students.encode_embeddings(model, model.item_embedding(seqs), seqs > 0)
            assert torch.allclose(hidden, model.forward(seqs), atol=1e-6)
            return
        every = students.encode(model, seqs)
        for t in range(1, seqs.size(1) + 1):
            prefix = torch.cat([seqs[:, :t], torch.zeros(len(seqs), seqs.size(1) - t, dtype=torch.long)], 1)
            last = model.forward(prefix, torch.full((len(seqs),), t))
            assert torch.allclose(every[:, t - 1], last, atol=1e-5), f"position {t - 1}"


@pytest.mark.parametrize("name", MODELS)
def test_scores_are_full_sort_predict(name, build):
    """``students.scores`` over every item equals the model's own full-ranking scores."""
    model, dataset = build(name)
    seqs = windows(dataset)
    lengths = torch.full((len(seqs),), seqs.size(1))
    interaction = {model.ITEM_SEQ: seqs, model.ITEM_SEQ_LEN: lengths}
    with torch.no_grad():
        expected = model.full_sort_predict(interaction)
        if students.is_causal(model):
            hidden = students.encode(model, seqs)[:, -1]
        else:  # BERT4Rec scores the history followed by its mask (RecBole drops the first item to fit)
            shifted = model.reconstruct_test_data(seqs, lengths)
            hidden = students.encode_embeddings(model, model.item_embedding(shifted), shifted > 0)[:, -1]
        assert expected.shape == (len(seqs), dataset.item_num)
        assert torch.allclose(students.scores(model, hidden), expected, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_one_hot_soft_windows_are_the_hard_windows(name, build):
    model, dataset = build(name)
    seqs = windows(dataset)
    one_hot = F.one_hot(seqs, dataset.item_num)[..., 1:].float()
    items = torch.arange(1, dataset.item_num)
    with torch.no_grad():
        torch.manual_seed(5)  # BERT4Rec draws its masked positions
        hard, hard_used = students.target_hidden(model, seqs)
        torch.manual_seed(5)
        soft, soft_used = students.target_hidden(model, one_hot, items)
    assert torch.equal(hard_used, soft_used) and hard_used.any()
    assert torch.allclose(hard[hard_used], soft[soft_used], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_learns_from_a_hard_a_labelled_and_a_soft_set(name, build):
    model, dataset = build(name)
    seqs = torch.cat([windows(dataset, m=4, length=6), torch.zeros(4, 2, dtype=torch.long)], 1)  # padded
    seqs[0, 3:] = 0  # a shorter window
    soft = torch.log_softmax(torch.randn(4, 6, dataset.item_num, generator=torch.Generator().manual_seed(1)) * 3, -1)
    soft[..., 0] = float("-inf")  # the padding item
    teacher, _ = build(name)
    with torch.no_grad():  # another model than the student's initial one
        for p in teacher.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    sets = {
        "hard": HardSequences(seqs),
        "labelled": TeacherLabelledSequences.from_teacher(seqs, teacher),
        "soft": SoftSequences(soft),
    }
    rows = torch.arange(4)
    for kind, training_set in sets.items():
        model, _ = build(name)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

        def loss():
            torch.manual_seed(3)  # the same BERT4Rec masks before and after
            return training_set.loss(model, rows)

        with torch.no_grad():
            before = loss().item()
        model.train()
        for step in range(15):
            optimizer.zero_grad()
            value = training_set.loss(model, rows)
            value.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            after = loss().item()
        assert torch.isfinite(torch.tensor([before, after])).all(), kind
        assert after < before, f"{name} did not learn from the {kind} set: {before:.4f} -> {after:.4f}"


def test_labelled_set_of_a_teacher_is_its_own_prediction(build):
    """A causal teacher's labels are its next-item distributions from each prefix; BERT4Rec's are
    its prediction for a mask placed after the prefix."""
    for name in ("TextGRU4Rec", "TextBERT4Rec"):
        teacher, dataset = build(name)
        seqs = windows(dataset, m=2, length=4)
        labels = students.next_item_log_probs(teacher, seqs)
        assert labels.shape == (2, 3, dataset.item_num)
        assert torch.allclose(labels.exp().sum(-1), torch.ones(2, 3), atol=1e-5)
        assert (labels[..., 0] == float("-inf")).all()
        with torch.no_grad():
            if students.is_causal(teacher):
                expected = teacher.full_sort_predict({teacher.ITEM_SEQ: seqs[:, :2], teacher.ITEM_SEQ_LEN: torch.full((2,), 2)})
            else:
                prefix = torch.cat([seqs[:, :2], torch.full((2, 1), teacher.mask_token)], 1)
                hidden = students.encode_embeddings(teacher, teacher.item_embedding(prefix), prefix > 0)[:, -1]
                expected = students.scores(teacher, hidden)
        expected[:, 0] = float("-inf")
        assert torch.allclose(labels[:, 1], torch.log_softmax(expected, -1), atol=1e-5)


@pytest.mark.parametrize("name", [m for m in MODELS if "BERT4Rec" not in m])  # causal: every target is used
def test_labelled_loss_is_the_kl_to_the_labels_of_the_positions_trained_on(name, build):
    """The flat label table gives the mean KL(label || model) over the batch's positions that
    have a target, as read straight from the dense labels, with the same gradient; rows come in
    any order and padded windows train on their real positions only."""
    model, dataset = build(name)
    seqs = windows(dataset, m=4, length=6)
    seqs[1, 3:] = 0
    seqs[3, 2:] = 0
    generator = torch.Generator().manual_seed(1)
    labels = torch.log_softmax(3 * torch.randn(4, 5, dataset.item_num, generator=generator), -1)
    labels[..., 0] = float("-inf")
    labelled = TeacherLabelledSequences(seqs, labels)
    for rows in (torch.tensor([3, 0, 1]), torch.tensor([2, 1, 3, 0])):
        model.zero_grad()
        loss = labelled.loss(model, rows)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        log_pred = torch.log_softmax(students.scores(model, students.encode(model, seqs[rows, :-1]))[..., 1:], -1)
        mask = labelled.label_mask[rows]
        target = labels[rows][..., 1:]
        expected = (target.exp() * (target - log_pred)).sum(-1)[mask].mean()
        expected.backward()
        assert mask.sum() < mask.numel()  # padding is left out
        assert torch.allclose(loss, expected, atol=1e-5)
        assert all(torch.allclose(a, p.grad, atol=1e-5) for a, p in
                   zip(grads, [p for p in model.parameters() if p.grad is not None]))


def test_text_bert4rec_mask_token_is_a_trained_row_without_text(build):
    model, dataset = build("TextBERT4Rec")
    embedding = model.item_embedding
    assert embedding.weight.shape == (dataset.item_num + 1, model.hidden_size)
    mask = torch.tensor([model.mask_token])
    assert torch.equal(embedding(mask)[0], embedding.extra[0]) and embedding.extra.requires_grad
    assert torch.allclose(embedding(torch.tensor([3]))[0], embedding.projection(embedding.table[3]))


def test_unsupported_models_are_named():
    from recbole_foster.config import get_model

    with pytest.raises(students.UnsupportedModel, match="supported are RecBole's SASRec"):
        students.family(get_model("Caser"))


@pytest.mark.parametrize("method, model, message", [
    ("foster", "TextGRU4Rec", "--method=foster needs TextSASRec"),
    ("kcenter", "TextBERT4Rec", "--method=kcenter needs a left-to-right model"),
    ("random", "Caser", "--method=random needs a model that trains on small sets"),
])
def test_a_method_refuses_a_model_it_cannot_use_before_loading_data(method, model, message, toy_data_root,
                                                                     tiny_bert_dir, tmp_path, capsys):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method=method, model=model)
    assert main(as_argv(options)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dealrec", "goracs"])
def test_gradient_coresets_run_with_a_recurrent_model(method, toy_data_root, tiny_bert_dir, tmp_path):
    """vmap cannot batch nn.GRU: the recurrent families take per-sample gradients one at a time."""
    from recbole_foster.run import run

    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method=method, model="TextGRU4Rec",
                          n_sequences=3, distilled_steps=5, distilled_eval_seeds=1, coreset_lissa_depth=3)
    for key in ("hidden_size", "inner_size", "n_layers", "n_heads"):  # TextSASRec's keys
        options.pop(key)
    results = run(as_argv(options))
    assert len(results["selected_users"]) == 3 and results["model"] == "TextGRU4Rec"
