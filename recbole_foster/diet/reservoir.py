"""Reservoir sampling (Vitter's Algorithm R) over the stream of training windows: Reservoir-KD.

After n windows of the stream, each of them is in the reservoir of size M with probability M / n,
whatever the stage it came in: a uniform sample of everything seen, kept at a fixed size without
looking back at old data. DIET's baseline of the same size: the windows a stage writes get the
labels of that stage's fine-tuned model (stored top-k), the others keep theirs.
"""

import numpy as np
import torch


def reservoir_update(size, filled, seen, n_new, generator):
    """``(slots, picks, filled, seen)`` after ``n_new`` more stream items.

    ``filled`` slots of ``size`` are in use and ``seen`` items came before. Item i of the new ones
    (the ``seen + i + 1``-th of the stream) fills the next free slot, or else replaces slot j for
    j drawn uniformly from 0..seen+i when j < size. Returns, per slot written, the new item that
    holds it at the end (a slot written twice keeps the later one), in slot order.
    """
    draws = torch.rand(n_new, generator=generator, dtype=torch.float64)
    holder = {}
    for i in range(n_new):
        seen += 1
        if filled < size:
            holder[filled] = i
            filled += 1
            continue
        j = int(draws[i] * seen)
        if j < size:
            holder[j] = i
    slots = sorted(holder)
    return torch.tensor(slots, dtype=torch.long), torch.tensor([holder[s] for s in slots], dtype=torch.long), \
        filled, seen


def reservoir_resize(held, seen, n_new, size, rng):
    """``(keep, picks)``: a uniform sample of ``size`` of the ``seen + n_new`` stream items from a
    uniform sample of ``held`` of the first ``seen`` and the ``n_new`` new ones (a memory whose size
    follows the stream, ``diet_memory_share``). How many old items the new sample holds is drawn
    from the hypergeometric law of a uniform sample (capped by ``held`` and the new items); ``keep``
    is a uniform subset of that many of the held entries (a uniform subset of a uniform sample is
    uniform), ``picks`` a uniform subset of the new items. Both sorted."""
    size = min(size, seen + n_new)
    old = int(rng.hypergeometric(seen, n_new, size)) if seen and n_new else (size if not n_new else 0)
    old = max(min(old, held), size - n_new)
    keep = np.sort(rng.permutation(held)[:old]) if held else np.zeros(0, dtype=np.int64)
    picks = np.sort(rng.permutation(n_new)[: size - old])
    return torch.as_tensor(keep, dtype=torch.long), torch.as_tensor(picks, dtype=torch.long)
