"""Full-ranking evaluation with RecBole's metrics, without RecBole's per-call overhead.

A small set is judged by checking the real validation split many times (every
``distilled_eval_every`` steps, for several seeds). RecBole's ``Trainer.evaluate`` re-collates
every batch from the dataset, recomputes all item representations for every batch (for the text
models a projection of the whole item-text table), and builds an (users x items) integer matrix
of positives per batch. :class:`FullSortScorer` collates the data once, computes the item
representations once per call, ranks each batch with one matmul and one top-k, and hands RecBole's
own ``Evaluator`` the ``rec.topk`` structure RecBole's ``Collector`` would have built, so the
metric definitions and their rounding (``metric_decimal_place``) are RecBole's.

It scores exactly what ``Trainer._full_sort_batch_eval`` scores: the model's state of each user
(its sequence output at the last real position), scored against every item, the padding item 0
and (for non-sequential data) the user's history items masked with -inf. It needs only a model
and a RecBole full-sort dataloader (no run context), so any trainer can use it.
"""

import weakref
from collections import OrderedDict

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator import Evaluator
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.register import metric_information

from recbole_foster.model import students

SUPPORTED_NEEDS = {"rec.topk", "rec.items"}


def supports(config):
    """True when every configured metric needs only the top-k ranking (Recall, NDCG, MRR, Hit,
    Precision, MAP, ...), which is all the scorer collects; else RecBole's evaluate is used."""
    try:
        needs = set().union(*(metric_information[m.lower()] for m in config["metrics"]))
    except KeyError:
        return False
    return needs <= SUPPORTED_NEEDS


def _user_states_and_items(model):
    """``(states(interaction) -> (B, H), item matrix (n_items, H), bias or None)`` as the
    model's ``full_sort_predict`` computes them, or None for a model of another family."""
    try:
        kind = students.family(model)
    except students.UnsupportedModel:
        return None
    items = students.item_vectors(model)
    if kind == "BERT4Rec":
        def states(interaction):
            seq, length = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
            output = model.forward(model.reconstruct_test_data(seq, length))
            return model.gather_indexes(output, length - 1)
        return states, items, model.output_bias
    return (lambda interaction: model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])), items, None


class FullSortScorer:
    """RecBole's full-ranking metrics of a model on one full-sort dataloader (validation or test).

    The batches are collated once, on first use, and kept on the device they were last used on.
    """

    def __init__(self, config, eval_data):
        if not isinstance(eval_data, FullSortEvalDataLoader):
            raise TypeError(f"FullSortScorer needs a full-sort evaluation dataloader, got {type(eval_data).__name__}.")
        self.config = config
        if not supports(config):
            raise ValueError(f"FullSortScorer computes top-k metrics only, got metrics {self.config['metrics']}.")
        self.eval_data = eval_data
        self.n_items = eval_data._dataset.item_num
        self.k = max(self.config["topk"])
        self.evaluator = Evaluator(self.config)
        self._batches, self._device = None, None

    def _batches_on(self, device):
        if self._batches is None:
            self._batches = list(self.eval_data)  # (interaction, history_index, positive_u, positive_i)
        if self._device != device:
            self._batches = [(inter.to(device), None if hist is None else tuple(h.to(device) for h in hist),
                              pos_u.to(device), pos_i.to(device)) for inter, hist, pos_u, pos_i in self._batches]
            self._device = device
        return self._batches

    def rank_batch(self, score_batch, batch):
        """``rec.topk`` rows of one batch: (B, k) 0/1 hits of the top-k items, then each user's
        number of positives, as RecBole's ``Collector.eval_batch_collect`` builds them."""
        interaction, history_index, positive_u, positive_i = batch
        scores = score_batch(interaction).view(-1, self.n_items)
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        topk_idx = torch.topk(scores, self.k, dim=-1).indices
        if history_index is None and torch.equal(positive_u, torch.arange(len(positive_u), device=positive_u.device)):
            # sequential data: one target per row, so RecBole's (rows x items) 0/1 matrix is this
            hits = (topk_idx == positive_i.unsqueeze(1)).int()
            return torch.cat((hits, torch.ones_like(hits[:, :1])), dim=1), topk_idx
        positive = torch.zeros_like(scores, dtype=torch.int)
        positive[positive_u, positive_i] = 1
        hits = torch.gather(positive, 1, topk_idx)
        return torch.cat((hits, positive.sum(dim=1, keepdim=True)), dim=1), topk_idx

    @torch.no_grad()
    def evaluate(self, model):
        """The metrics ``Trainer(config, model).evaluate(eval_data, load_best_model=False)`` returns."""
        model.eval()
        device = next(model.parameters()).device
        parts = _user_states_and_items(model)
        if parts is None:
            score_batch = model.full_sort_predict
        else:
            states, items, bias = parts
            items_t = items.transpose(0, 1)

            def score_batch(interaction):
                scores = torch.matmul(states(interaction), items_t)
                return scores if bias is None else scores + bias
        return self.evaluate_scores(score_batch, device)

    @torch.no_grad()
    def evaluate_scores(self, score_batch, device="cpu"):
        """RecBole's metrics of any scorer: ``score_batch(interaction)`` -> (batch, n_items) scores
        (a model's, or a model-free ranking such as a popularity list), ranked and masked as above."""
        struct = DataStruct()
        rows, top = [], []
        for batch in self._batches_on(device):
            ranked, topk_idx = self.rank_batch(score_batch, batch)
            rows.append(ranked.cpu())
            top.append(topk_idx.cpu())
        struct.set("rec.topk", torch.cat(rows))
        struct.set("rec.items", torch.cat(top))
        return OrderedDict(self.evaluator.evaluate(struct))


_SCORERS = weakref.WeakKeyDictionary()


def scorer_for(config, eval_data):
    """One :class:`FullSortScorer` per dataloader (its collated batches are reused by every call),
    or None where it does not apply (not a full-sort loader, or metrics beyond the top-k ranking):
    then RecBole's ``Trainer.evaluate`` is the way."""
    if not isinstance(eval_data, FullSortEvalDataLoader) or not supports(config):
        return None
    scorer = _SCORERS.get(eval_data)
    if scorer is None:
        scorer = _SCORERS[eval_data] = FullSortScorer(config, eval_data)
    return scorer
