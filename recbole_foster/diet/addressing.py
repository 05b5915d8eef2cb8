"""Influence-aware memory addressing: which memory entries a stage rewrites, and with what.

After the stage's model is trained, every memory entry is scored by the alignment of its gradient
(with its stored labels) with the new stage's loss gradient, and every new window by its
influence on the period that follows (:mod:`.influence`). The ``round(f * M)`` lowest-scoring
entries are *stale* (``f`` = ``diet_update_fraction``, or with ``stream`` the new stage's share of
the rows seen so far: a reservoir sample's turnover in expectation, so DIET and Reservoir-KD
differ in *which* windows go and come, not how many); each is replaced by the most influential
new window not yet in memory, labelled by the current model. Every other entry keeps its window
and its labels.

**Equal storage with a random memory.** Influence favours long windows (a window is scored by
all of its positions), so a memory of M windows is also held to a *position budget*: at most as
many labelled positions as M windows drawn at random from the windows seen so far hold on
average (``M x`` their mean, rounded), which is what Reservoir-KD's M windows hold in
expectation. Replacements are taken in decreasing influence, skipping any window that would
leave too few positions for the slots still to fill.

Ablations (``diet_addressing``): ``all`` rewrites every entry each stage (the memory is rebuilt
from the newest stage alone); ``random`` rewrites as many entries as ``influence``, chosen at
random (the replacements are still the most influential new windows), so the difference to
``influence`` is the choice of *which* entries go.
"""

import numpy as np
import torch

from recbole_foster.diet.memory import trained_positions

ADDRESSING_MODES = ("influence", "all", "random")


def update_fraction(setting, new_rows, rows_seen):
    """The share of the memory a stage rewrites: ``setting`` itself, or with ``"stream"`` the
    stage's share of the rows seen so far (``new_rows / rows_seen``, what Algorithm R replaces in
    expectation)."""
    if setting == "stream":
        return new_rows / rows_seen if rows_seen else 0.0
    return float(setting)


def n_replaced(memory_size, fraction, mode):
    """How many entries a stage rewrites (Python's ``round``: half to even)."""
    return memory_size if mode == "all" else int(round(fraction * memory_size))


def within_budget(order, sizes, count, budget):
    """Up to ``count`` of the candidates ``order`` (best first) whose ``sizes`` sum to at most
    ``budget``: a candidate is taken if it and the smallest candidates after it can still fill
    every slot left, so a full set is found whenever one fits. No budget (None): the first ``count``."""
    if budget is None:
        return order[:count]
    ordered = sizes[order].numpy().astype(np.int64)
    picks, left = [], int(budget)
    for i, c in enumerate(order.tolist()):
        need = count - len(picks) - 1  # slots still to fill after this one
        if need < 0:
            break
        if ordered[i] > left:
            continue
        rest = ordered[i + 1:]  # the candidates that could still fill the other slots
        if need == 0:
            reserve = 0
        elif need >= len(rest):
            reserve = int(rest.sum())
        else:
            reserve = int(np.partition(rest, need - 1)[:need].sum())  # the need smallest
        if ordered[i] + reserve <= left:
            picks.append(c)
            left -= int(ordered[i])
    return torch.as_tensor(picks, dtype=torch.long)


def plan_update(memory_scores, candidate_scores, fraction, mode, generator=None, excluded=None,
                memory_sizes=None, candidate_sizes=None, budget=None):
    """``(slots, picks)``: memory entries to rewrite and the candidates that replace them.

    Slots are the lowest-scoring entries (``random``: drawn with ``generator``), at most as many
    as there are candidates not ``excluded`` (a bool mask: windows already in memory); picks are
    those candidates in decreasing score, paired with the slots in increasing score. Ties go to
    the lower index. An empty candidate list rewrites nothing. With a position ``budget`` (and
    the entries' and candidates' sizes), only as many of those slots are rewritten as the picks can
    fill within what the kept entries leave of the budget (:func:`within_budget`).
    """
    if mode not in ADDRESSING_MODES:
        raise ValueError(f"diet_addressing must be one of {ADDRESSING_MODES}, got {mode!r}.")
    candidates = torch.arange(len(candidate_scores))
    if excluded is not None:
        candidates = candidates[~excluded]
    count = min(n_replaced(len(memory_scores), fraction, mode), len(candidates))
    if mode == "random":
        slots = torch.randperm(len(memory_scores), generator=generator)[:count]
        slots = slots[torch.argsort(memory_scores[slots], stable=True)]
    else:
        slots = torch.argsort(memory_scores, stable=True)[:count]
    order = candidates[torch.argsort(candidate_scores[candidates], descending=True, stable=True)]
    if budget is None:
        return slots, order[:count]
    for n in range(count, -1, -1):  # the most slots whose freed positions the picks fit in
        kept = int(memory_sizes.sum()) - int(memory_sizes[slots[:n]].sum())
        picks = within_budget(order, candidate_sizes, n, budget - kept)
        if len(picks) == n:
            return slots[:n], picks
    return slots[:0], order[:0]


def address(memory, memory_scores, candidate_rows, candidate_scores, label, fraction, mode, generator=None,
            candidate_sizes=None, budget=None):
    """The updated memory and what changed: ``(memory, record)``.

    ``candidate_rows`` identify the new windows (training-split rows; one already in memory is
    never taken twice); ``label(picks)`` returns a :class:`~recbole_foster.diet.memory.Memory` of
    the chosen candidates labelled by the current model. ``record`` says which entries were
    replaced, their scores and the scores of their replacements (results.json). ``budget``:
    labelled positions the memory may hold (``candidate_sizes``: each candidate's).
    """
    in_memory = set(memory.rows.tolist())
    excluded = torch.tensor([r in in_memory for r in candidate_rows.tolist()], dtype=torch.bool)
    slots, picks = plan_update(memory_scores, candidate_scores, fraction, mode, generator, excluded,
                               trained_positions(memory.windows), candidate_sizes, budget)
    record = {
        "replaced_slots": slots.tolist(),
        "replaced_scores": memory_scores[slots].tolist(),
        "replacement_rows": candidate_rows[picks].tolist(),
        "replacement_scores": candidate_scores[picks].tolist(),
        "memory_scores": memory_scores.tolist(),
    }
    if len(slots) == 0:
        return memory, record
    return memory.replaced(slots, label(picks), torch.arange(len(picks))), record
