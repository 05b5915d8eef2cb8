"""The synthetic summary: m soft item sequences of length n, Tucker-factorised as in TD3.

``X[u, t, :] = softmax_items( sum_abc G[a, b, c] U[u, a] T[t, b] V[item, c] / tau )``

U (m x r1) are synthetic-user factors, T (n x r2) temporal factors, G (r1 x r2 x d) the core and
V the frozen item-text embedding table (d = its width), so the learnable size does not depend
on the catalog. Probabilities are only ever formed over a *subset* of items (FOSTER's item
sampling), so no step builds an (m, n, |catalog|) tensor; :meth:`full_probabilities` exists for
evaluation and export, where the whole catalog is wanted once.

``separate_targets`` (label modes ``separate``/``fixed``, :mod:`recbole_foster.label_modes`; not in the paper) gives the soft *targets*
their own core G' on the same U and T: position t's input is X[u, t] and the label it is trained
to predict is Y[u, t + 1]. In TD3/FOSTER one tensor is both (Y = X), so a position cannot carry
a soft, teacher-like label and stay a realistic one-item input; docs/experiments.md measures why
that matters. :meth:`freeze_targets` (label mode ``fixed``) keeps those labels as they were
fitted and lets distillation move the inputs only.
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
                 temperature=0.1, init_std=0.02, separate_targets=False):
        super().__init__()
        self.register_buffer("item_factor", item_factor, persistent=False)
        dim = item_factor.size(1)
        self.user_factor = nn.Parameter(torch.randn(n_sequences, user_rank) * init_std)
        self.time_factor = nn.Parameter(torch.randn(seq_len, time_rank) * init_std)
        # The core starts larger than U/T so that the initial logits are not all zero.
        self.core = nn.Parameter(torch.randn(user_rank, time_rank, dim) / math.sqrt(user_rank * time_rank))
        self.target_core = nn.Parameter(self.core.detach().clone()) if separate_targets else None
        self.register_buffer("target_codes", None)  # set by freeze_targets()
        self.temperature = temperature

    @property
    def separate_targets(self):
        return self.target_core is not None

    @property
    def n_sequences(self):
        return self.user_factor.size(0)

    @property
    def seq_len(self):
        return self.time_factor.size(0)

    @property
    def targets_frozen(self):
        return self.target_codes is not None

    def freeze_targets(self, codes=None):
        """Fix the separate targets at their current values (or at ``codes``, (m, n, d)).

        The target logits are U T G' V, and U, T are shared with the inputs, so freezing G'
        alone would still let the labels move; the (m, n, d) codes U T G' are stored instead.
        Why: BOME moves the synthetic factors along lambda * grad q, and the target entropy
        cancels in q = L_in(theta) - L_in(theta_T), so that force is linear in the labels and
        drives them to one-hot (docs/experiments.md).
        """
        if not self.separate_targets:
            raise ValueError("freeze_targets needs a summary with separate_targets=True.")
        if codes is None:
            with torch.no_grad():
                codes = self.sequence_codes(targets=True)
        self.target_codes = codes.detach().clone().to(self.core.device)
        self.target_core.requires_grad_(False)

    def trainable_parameters(self):
        """The factors distillation moves (a frozen target core excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    def sequence_codes(self, users=None, targets=False):
        """(m, n, d): the user x time part of the product, shared by every item subset."""
        if targets and self.targets_frozen:
            return self.target_codes if users is None else self.target_codes[users]
        user_factor = self.user_factor if users is None else self.user_factor[users]
        core = self.target_core if targets else self.core
        return torch.einsum("ua,tb,abc->utc", user_factor, self.time_factor, core)

    def logits(self, item_ids, users=None, targets=False):
        """(m, n, K) logits over the items ``item_ids`` (K,)."""
        return self.sequence_codes(users, targets) @ self.item_factor[item_ids].T / self.temperature

    def soft_batch(self, item_ids):
        """(input log-probs, target log-probs or None when the inputs are also the targets)."""
        inputs = self.log_probabilities(item_ids)
        if not self.separate_targets:
            return inputs, None
        return inputs, torch.log_softmax(self.logits(item_ids, targets=True), dim=-1)

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
        optimizer = torch.optim.Adam([self.user_factor, self.time_factor, self.core], lr=lr)
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

    def fit_targets(self, target_log_probs, mask, steps=300, lr=0.01, n_sampled=512, generator=None):
        """Warm start of the separate targets: fit G' so that Y matches given soft labels.

        ``target_log_probs(item_ids)`` returns (m, n, K) label log-distributions over a subset
        (e.g. the teacher's next-item predictions for a real sequence); ``mask`` (m, n) marks the
        positions that have one. Only G' moves, so the inputs fitted before stay as they are.
        Returns the final KL on the last subset.
        """
        if not self.separate_targets:
            raise ValueError("fit_targets needs a summary with separate_targets=True.")
        mask = mask.to(self.item_factor.device)
        optimizer = torch.optim.Adam([self.target_core], lr=lr)
        for _ in range(steps):
            items = sample_items(self.item_factor.size(0), n_sampled, generator, self.item_factor.device)
            with torch.no_grad():
                labels = target_log_probs(items)[mask]
            log_pred = torch.log_softmax(self.logits(items, targets=True)[mask], dim=-1)
            loss = torch.nn.functional.kl_div(log_pred, labels, reduction="batchmean", log_target=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    def log_probabilities(self, item_ids, users=None):
        """(m, n, K) log-distributions over ``item_ids`` (numerically safe for KL targets)."""
        return torch.log_softmax(self.logits(item_ids, users), dim=-1)

    @torch.no_grad()
    def full_log_probabilities(self, chunk=65536, targets=False):
        """(m, n, n_items) log-distributions over the whole catalog (padding item 0: -inf)."""
        codes = self.sequence_codes(targets=targets)
        n_items = self.item_factor.size(0)
        logits = torch.empty(codes.shape[:2] + (n_items,), device=codes.device)
        for start in range(0, n_items, chunk):
            ids = torch.arange(start, min(start + chunk, n_items), device=codes.device)
            logits[..., start:start + len(ids)] = codes @ self.item_factor[ids].T / self.temperature
        logits[..., 0] = float("-inf")
        return torch.log_softmax(logits, dim=-1)

    def full_target_log_probabilities(self, chunk=65536):
        """The separate targets over the whole catalog, or None when the inputs are the targets."""
        return self.full_log_probabilities(chunk, targets=True) if self.separate_targets else None

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
