"""Distributional-hypothesis (DH) regulariser (FOSTER Sec. 3.3).

Tied input/output item embeddings are justified when items that are interchangeable in context
are also distributed alike in the data. For random item pairs (i, j) of the current subset:

* semantic distance d_sem(i, j): put i, then j, at a random position t of a random synthetic
  context (positions < t stay the synthetic soft items) and compare the fixed teacher's next-item
  distributions over the subset: total variation, in [0, 1]. A constant target (no gradient).
* conditional distance d_cond(i, j): how differently i and j occur in the synthetic data. Each
  item's column of the synthetic tensor over all (sequence, position) cells, normalised to a
  distribution over cells, is its occurrence profile; d_cond is the total variation between the
  two profiles, in [0, 1], differentiable in the synthetic factors.

L_DH = mean over pairs of (d_cond - d_sem)^2 pulls conditional similarity towards semantic
similarity. (The paper's equations were lost from our copy; docs/method.md explains the choice.)
"""

import torch


def total_variation(p, q):
    return 0.5 * (p - q).abs().sum(-1)


@torch.no_grad()
def semantic_distance(teacher, probs, item_ids, pair_a, pair_b, users, positions):
    """Teacher's output change when item a is swapped for item b at (user, position)."""
    reps = teacher.item_representations(item_ids)  # (K, H)
    context = probs[users].detach() @ reps  # (P, n, H)
    arange = torch.arange(len(users), device=context.device)
    outputs = []
    for swapped in (pair_a, pair_b):
        emb = context.clone()
        emb[arange, positions] = reps[swapped]
        valid = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)
        hidden = teacher.encode_embeddings(emb, valid)[arange, positions]  # causal: later positions unused
        outputs.append(torch.softmax(hidden @ reps.T, dim=-1))
    return total_variation(*outputs)


def conditional_distance(probs, pair_a, pair_b):
    """Total variation between the occurrence profiles of items a and b in the synthetic data."""
    flat = probs.reshape(-1, probs.size(-1))  # (cells, K)
    profile_a = flat[:, pair_a].T
    profile_b = flat[:, pair_b].T
    profile_a = profile_a / profile_a.sum(-1, keepdim=True).clamp_min(1e-12)
    profile_b = profile_b / profile_b.sum(-1, keepdim=True).clamp_min(1e-12)
    return total_variation(profile_a, profile_b)


def dh_loss(teacher, probs, item_ids, n_pairs, generator):
    """L_DH for ``n_pairs`` random pairs of the subset ``item_ids`` ((m, n, K) ``probs``)."""
    m, n, k = probs.shape
    pair_a = torch.randint(0, k, (n_pairs,), generator=generator).to(probs.device)
    pair_b = (pair_a + torch.randint(1, k, (n_pairs,), generator=generator).to(probs.device)) % k
    users = torch.randint(0, m, (n_pairs,), generator=generator).to(probs.device)
    positions = torch.randint(0, n, (n_pairs,), generator=generator).to(probs.device)
    d_sem = semantic_distance(teacher, probs, item_ids, pair_a, pair_b, users, positions)
    d_cond = conditional_distance(probs, pair_a, pair_b)
    return ((d_cond - d_sem) ** 2).mean()
