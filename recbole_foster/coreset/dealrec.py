"""DEALRec's coverage-enhanced sample selection (Lin et al., SIGIR 2024; ``code/prune/prune.py``).

Each training sequence gets an overall score = minmax(influence) + effort_weight * minmax(effort).
A high score marks a *hard* sample (large influence on the empirical risk, large gradient norm);
following coverage-centric coreset selection (Zheng et al., ICLR 2023), which DEALRec adopts, the
``prune_ratio`` highest-scoring samples are dropped first as likely noise. The rest are spread
over ``n_strata`` equal-width score strata and the budget is shared out from the smallest stratum
up, so sparse score regions are covered instead of the dense middle dominating.
"""

import math

import torch


def minmax(x):
    """``x`` rescaled to [0, 1] in float64; all zeros when ``x`` is constant."""
    x = x.detach().double()
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else torch.zeros_like(x)


def score_strata(scores, n_strata):
    """Stratum (0 .. n_strata-1) of each score: equal-width bins over [min, max], right-closed.

    As in DEALRec, a score goes to the first bin whose upper edge is >= it, so the minimum is in
    bin 0; the last edge is exactly the maximum, so rounding never leaves the maximum out.
    """
    s_min, s_max = scores.min(), scores.max()
    edges = s_min + (s_max - s_min) / n_strata * torch.arange(1, n_strata + 1, dtype=scores.dtype, device=scores.device)
    edges = torch.minimum(edges, s_max)
    edges[-1] = s_max
    return torch.searchsorted(edges, scores)


def dealrec_select(influence, effort, n, effort_weight=0.5, prune_ratio=0.1, n_strata=25, seed=0):
    """Indices (n,), ascending, of the DEALRec coreset of the N samples scored by ``influence``, ``effort``.

    * prune: the floor(prune_ratio * N) highest overall scores (ties: lower index pruned first);
    * strata: :func:`score_strata` over the remaining scores;
    * sampling: strata in ascending size (ties: lower-score stratum first); each takes
      min(size, remaining_budget // strata_left) members uniformly at random (``seed``). The last
      stratum is the largest, so the budget is always met exactly when n <= samples left.
    """
    overall = minmax(influence) + effort_weight * minmax(effort)
    n_total = overall.numel()
    n_prune = math.floor(prune_ratio * n_total)
    kept = torch.argsort(overall, descending=True, stable=True)[n_prune:]
    if not 0 < n <= kept.numel():
        raise ValueError(
            f"dealrec_select: budget n={n} but only {kept.numel()} of {n_total} samples remain after "
            f"pruning the {n_prune} hardest (prune_ratio={prune_ratio})."
        )
    stratum = score_strata(overall[kept], n_strata)
    members = [kept[stratum == k].sort().values for k in range(n_strata)]
    members = sorted((m for m in members if m.numel()), key=len)  # stable: ties keep score order
    generator = torch.Generator().manual_seed(seed)
    selected, budget = [], n
    for position, group in enumerate(members):
        take = min(group.numel(), budget // (len(members) - position))
        selected.append(group[torch.randperm(group.numel(), generator=generator)[:take]])
        budget -= take
    return torch.cat(selected).sort().values
