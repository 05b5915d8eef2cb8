"""TextItemEmbedding: item representations computed from frozen item-text embeddings.

A drop-in for the ``item_embedding`` (an ``nn.Embedding``) of RecBole's sequential models: item
``i`` is ``projection(table[i])``, where ``table`` holds precomputed language-model embeddings of
the item texts and only the linear projection is trained. So a model can score items it has no
trained ID vector for, and its trainable size does not grow with the catalogue.

The module offers what RecBole's models use of an embedding: calling it on item ids, and
``.weight`` (every item's vector, used for full-sort scoring and the CE loss). ``soft`` embeds
probability vectors over items, which is how distilled (soft) sequences are fed to a model.
"""

import copy

import torch
from torch import nn


class TextItemEmbedding(nn.Module):
    """``projection(table[item_ids])`` with a frozen ``table`` (n_items, d) and a trainable
    ``projection = nn.Linear(d, hidden_size)``.

    Padding: row 0 of ``table`` is the padding item and is expected to be zero (as
    ``attach_item_text_embeddings`` makes it), so id 0 embeds to ``projection.bias``, not to a
    zero vector as with ``nn.Embedding(padding_idx=0)``. This is deliberate: it is what
    TextSASRec has always computed, and trained models and benchmark numbers depend on it
    bit for bit. RecBole's sequential models mask padded positions out of attention (SASRec) or
    read the state at the last real position (GRU4Rec), and the evaluation drops item 0 from
    the ranking, so the value only matters as numerics.

    The table is a non-persistent buffer: it follows ``.to(device)``/``.double()`` but is kept
    out of ``state_dict`` (it is rebuilt from the cached text embeddings, and would dominate the
    size of every checkpoint), and it gets no gradient. It is the caller's tensor, not a copy:
    every model built from one dataset shares one table (on a 10M-item catalog a copy is 15 GiB),
    so nothing may write to it in place; ``copy_sharing_tables`` copies a model the same way.
    """

    def __init__(self, table, hidden_size, extra_rows=0):
        super().__init__()
        if table.dim() != 2:
            raise ValueError(f"TextItemEmbedding: expected an (n_items, dim) table, got shape {tuple(table.shape)}.")
        self.register_buffer("table", table.detach(), persistent=False)
        self.projection = nn.Linear(table.size(1), hidden_size)
        # ids n_items .. n_items + extra_rows - 1: tokens with no text (BERT4Rec's mask), trained freely
        self.extra = nn.Parameter(torch.zeros(extra_rows, hidden_size)) if extra_rows else None

    def forward(self, item_ids):
        """Representations of ``item_ids`` (any shape) -> ``item_ids.shape + (hidden_size,)``."""
        if self.extra is None:
            return self.projection(self.table[item_ids])
        n_text = self.table.size(0)
        texts = self.projection(self.table[item_ids.clamp(max=n_text - 1)])
        extra = self.extra[(item_ids - n_text).clamp(min=0, max=self.extra.size(0) - 1)]
        return torch.where((item_ids >= n_text).unsqueeze(-1), extra, texts)

    @property
    def weight(self):
        """(n_items, hidden_size): every item's representation, row ``i`` = ``self(i)``.

        Named like ``nn.Embedding.weight`` so RecBole code that scores all items
        (``seq_output @ self.item_embedding.weight.T``) works unchanged. It is computed, not a
        parameter: gradients flow to the projection.
        """
        if self.extra is None:
            return self.projection(self.table)
        return torch.cat([self.projection(self.table), self.extra])

    def soft(self, item_probs, item_ids):
        """Embeddings of soft items: ``item_probs`` (..., K) are weights over the K items
        ``item_ids`` (K,); the result (..., hidden_size) is the weighted mix of their
        representations. A one-hot row gives that item's representation."""
        return item_probs @ self(item_ids)

    def extra_repr(self):
        extra = f", {self.extra.size(0)} trainable extra row(s)" if self.extra is not None else ""
        return f"table={tuple(self.table.shape)} (frozen){extra}"


def copy_sharing_tables(model):
    """``copy.deepcopy(model)`` whose TextItemEmbeddings keep the original's frozen table (one
    table in memory however many copies, e.g. FOSTER's inner model, are made)."""
    tables = {id(m.table): m.table for m in model.modules() if isinstance(m, TextItemEmbedding)}
    return copy.deepcopy(model, memo=tables)
