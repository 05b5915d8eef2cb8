"""Greedy k-center (Sener & Savarese, 2018): cover the feature space with the chosen points.

Each step adds the point farthest (Euclidean) from everything chosen so far, a 2-approximation of
the minimax-cover objective. Only a running vector of each point's distance to its nearest chosen
point is kept, so memory is O(N) beyond the features themselves (never an N x N matrix).
"""

import torch


def greedy_k_center(features, n, seed):
    """Indices (n,) of ``n`` distinct rows of ``features`` (N, d), in the order they were picked.

    The first point is drawn uniformly with ``seed`` (the classical seeded start; the rest is
    deterministic). Ties in the farthest distance go to the lowest index.
    """
    features = features.detach().double()
    n_points = features.size(0)
    if not 0 < n <= n_points:
        raise ValueError(f"greedy_k_center: cannot pick n={n} of {n_points} points.")
    sq_norms = (features * features).sum(1)
    first = int(torch.randint(n_points, (1,), generator=torch.Generator().manual_seed(seed)))
    chosen = [first]
    nearest = torch.full((n_points,), float("inf"), dtype=features.dtype, device=features.device)
    for _ in range(n - 1):
        center = features[chosen[-1]]
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2: one matrix-vector product, O(N) extra memory
        dist = (sq_norms - 2 * features @ center + sq_norms[chosen[-1]]).clamp_min(0)
        nearest = torch.minimum(nearest, dist)
        nearest[chosen[-1]] = -1.0  # chosen points never win again, even among duplicates
        chosen.append(int(nearest.argmax()))
    return torch.tensor(chosen, dtype=torch.long)
