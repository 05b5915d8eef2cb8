"""The synthetic summary: m soft item sequences of length n, Tucker-factorised as in TD3.

``X[u, t, :] = softmax_items( sum_abc G[a, b, c] U[u, a] T[t, b] V[item, c] / tau )``

U (m x r1) are synthetic-user factors, T (n x r2) temporal factors, G (r1 x r2 x d) the core and
V the frozen item-text embedding table (d = its width), so the learnable size does not depend
on the catalog. Probabilities are only ever formed over a *subset* of items (FOSTER's item
sampling), so no step builds an (m, n, |catalog|) tensor; :meth:`full_probabilities` exists for
evaluation and export, where the whole catalog is wanted once.
"""

import math

import torch
from torch import nn


def item_factor_from_text(text_embeddings):
    """Centred, L2-normalised text embeddings (row 0, padding, stays zero).

    Raw BERT sentence embeddings share a large common direction (anisotropy), which would make
    every item's logit move together; centring and normalising keeps the logits discriminative.
    """
    table = text_embeddings.float()
    centred = table - table[1:].mean(0, keepdim=True)
    normalised = centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-8)
    normalised[0] = 0.0
    return normalised


class SyntheticSummary(nn.Module):
    def __init__(self, item_factor, n_sequences, seq_len, user_rank=16, time_rank=16,
                 temperature=0.1, init_std=0.02):
        super().__init__()
        self.register_buffer("item_factor", item_factor, persistent=False)
        dim = item_factor.size(1)
        self.user_factor = nn.Parameter(torch.randn(n_sequences, user_rank) * init_std)
        self.time_factor = nn.Parameter(torch.randn(seq_len, time_rank) * init_std)
        # The core starts larger than U/T so that the initial logits are not all zero.
        self.core = nn.Parameter(torch.randn(user_rank, time_rank, dim) / math.sqrt(user_rank * time_rank))
        self.temperature = temperature

    @property
    def n_sequences(self):
        return self.user_factor.size(0)

    @property
    def seq_len(self):
        return self.time_factor.size(0)

    def sequence_codes(self, users=None):
        """(m, n, d): the user x time part of the product, shared by every item subset."""
        user_factor = self.user_factor if users is None else self.user_factor[users]
        return torch.einsum("ua,tb,abc->utc", user_factor, self.time_factor, self.core)

    def logits(self, item_ids, users=None):
        """(m, n, K) logits over the items ``item_ids`` (K,)."""
        return self.sequence_codes(users) @ self.item_factor[item_ids].T / self.temperature

    def probabilities(self, item_ids, users=None):
        """(m, n, K) soft distributions restricted to (and renormalised over) ``item_ids``."""
        return torch.softmax(self.logits(item_ids, users), dim=-1)

    def fit_to_sequences(self, item_seqs, steps=300, lr=0.01, n_sampled=512, generator=None):
        """Warm start: fit the factors so that each synthetic sequence reproduces a real one.

        ``item_seqs`` (m, n) are real item ids (0 = no item: that position is left free). Each
        step is a cross-entropy over the sequence items plus ``n_sampled`` random items, so the
        cost stays independent of the catalog. Returns the final top-1 agreement with ``item_seqs``.
        """
        item_seqs = item_seqs.to(self.item_factor.device)
        mask = item_seqs > 0
        targets = item_seqs[mask]
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        for _ in range(steps):
            sampled = sample_items(self.item_factor.size(0), n_sampled, generator, self.item_factor.device)
            items = torch.unique(torch.cat([targets, sampled]))
            logits = self.logits(items)[mask]
            loss = torch.nn.functional.cross_entropy(logits, torch.searchsorted(items, targets))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            items = torch.unique(targets)
            top1 = items[self.logits(items)[mask].argmax(-1)]
        return float((top1 == targets).float().mean())

    def log_probabilities(self, item_ids, users=None):
        """(m, n, K) log-distributions over ``item_ids`` (numerically safe for KL targets)."""
        return torch.log_softmax(self.logits(item_ids, users), dim=-1)

    @torch.no_grad()
    def full_log_probabilities(self, chunk=65536):
        """(m, n, n_items) log-distributions over the whole catalog (padding item 0: -inf)."""
        codes = self.sequence_codes()
        n_items = self.item_factor.size(0)
        logits = torch.empty(codes.shape[:2] + (n_items,), device=codes.device)
        for start in range(0, n_items, chunk):
            ids = torch.arange(start, min(start + chunk, n_items), device=codes.device)
            logits[..., start:start + len(ids)] = codes @ self.item_factor[ids].T / self.temperature
        logits[..., 0] = float("-inf")
        return torch.log_softmax(logits, dim=-1)

    def full_probabilities(self, chunk=65536):
        """(m, n, n_items) distributions over the whole catalog (padding item 0 excluded)."""
        return self.full_log_probabilities(chunk).exp()


def mean_entropy(probs):
    """Mean entropy (nats) of the distributions in ``probs`` (..., K)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()


def sample_items(n_items, k, generator=None, device="cpu"):
    """A uniform random subset of ``k`` distinct real items (ids 1..n_items-1), sorted.

    Draws with replacement and deduplicates, so the cost is O(k), never O(n_items).
    """
    n_real = n_items - 1
    if k >= n_real:
        return torch.arange(1, n_items, device=device)
    chosen = torch.empty(0, dtype=torch.long)
    while chosen.numel() < k:
        draw = torch.randint(1, n_items, (2 * k,), generator=generator)
        chosen = torch.unique(torch.cat([chosen, draw]))
    # unique() sorts, so keep a random k of the candidates, not the smallest ones
    keep = torch.randperm(chosen.numel(), generator=generator)[:k]
    return chosen[keep].sort().values.to(device)
