"""DIET's time stages: which training rows each stage learns from, and which rows judge it.

The training period of ``global_temporal`` (targets ``t < t1``) is cut at the quantiles of the
training rows' target times into ``diet_stages`` slices with equal numbers of rows; slice s is
``[b_{s-1}, b_s)``, half-open like the protocol's periods (``b_0 = -inf``, ``b_S = t1``). The
training rows are the run's own (with ``train_window`` the non-overlapping windows, so the stages
together hold exactly the real-data run's training data). A row belongs to the slice of its
target; its history is a prefix of the user's history, so it may reach back into earlier slices,
never past its target.

After stage s a model is judged on the period that follows: every sample (RecBole's one row per
target, not the training windows) whose target is in slice s + 1, and after the last stage the
real validation split. Its rows are split by user with a seeded hash into a *selection* half
(early stopping, best state, the influence target) and a *report* half (the reported numbers),
so the number in the table was never used to choose anything. The test split is used once, at
the end.
"""

import numpy as np
import torch

from recbole_foster.diet.memory import trained_positions
from recbole_foster.errors import DatasetError


def stage_bounds(times, n_stages):
    """The ``n_stages - 1`` inner cut points: quantiles of ``times`` at 1/S, 2/S, ... (linear interpolation)."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        return np.full(n_stages - 1, np.inf)
    return np.quantile(times, [k / n_stages for k in range(1, n_stages)])


def stage_of(times, bounds):
    """Slice index (0-based) of each time: ``b_{s-1} <= t < b_s`` is slice s - 1."""
    return np.searchsorted(np.asarray(bounds, dtype=np.float64), np.asarray(times, dtype=np.float64), side="right")


def user_halves(n_users, seed):
    """(n_users,) bool: True for the users of the selection half (a seeded random bit per user id)."""
    rank = torch.randperm(n_users, generator=torch.Generator().manual_seed(seed))
    return rank % 2 == 0


def windows_of(dataset, rows, max_len):
    """``(users, (n, max_len) item ids)`` of RecBole sample rows: history + target, the last
    ``max_len`` items, right-padded with 0 (the windows every small set of the package holds)."""
    feat, config = dataset.inter_feat, dataset.config
    rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    hist = feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]][rows]
    length = feat[config["ITEM_LIST_LENGTH_FIELD"]][rows]
    full = torch.zeros(len(rows), hist.size(1) + 1, dtype=torch.long)
    full[:, : hist.size(1)] = hist
    full[torch.arange(len(rows)), length] = feat[dataset.iid_field][rows]
    # a history of max_len items makes max_len + 1: drop its oldest item
    window = torch.where((length >= max_len).unsqueeze(1), full[:, 1: max_len + 1], full[:, :max_len])
    return feat[dataset.uid_field][rows].clone(), window


class StagePlan:
    """The stages of one run: slice bounds, each stage's training rows, each stage's judging period."""

    def __init__(self, ctx):
        config = ctx.config
        self.ctx, self.n_stages = ctx, int(config["diet_stages"])
        self.max_len = int(config["MAX_ITEM_LIST_LENGTH"])
        self.train = ctx.train_data.dataset
        self.time_field = self.train.time_field
        times = self.train.inter_feat[self.time_field].double().numpy()
        self.t1 = float(ctx.dataset.cut_points[0])
        self.bounds = stage_bounds(times, self.n_stages)
        self.ends = [float(b) for b in self.bounds] + [self.t1]  # slice s ends (exclusive) at ends[s]
        slice_of = stage_of(times, self.bounds)
        order = np.argsort(times, kind="stable")  # stream order: by target time
        self.train_rows = [order[slice_of[order] == s] for s in range(self.n_stages)]
        self.all_times = ctx.dataset.inter_feat[self.time_field].double().numpy()  # every sample, all periods
        self.halves = user_halves(int(ctx.dataset.user_num), int(config["seed"]))
        self._loaders, self._windows = {}, {}

    # ----- what a stage trains on -----
    def rows(self, stage):
        """Training rows (indices into the training split) of ``stage`` (0-based), in time order."""
        return self.train_rows[stage]

    def rows_until(self, stage):
        """Every training row of stages 0..stage (what Full-s retrains on)."""
        return np.concatenate(self.train_rows[: stage + 1])

    def windows(self, stage):
        """``(rows, users, windows)`` of the stage's training rows (the candidates of the memory);
        built once per stage (every later stage's position budget reads them again)."""
        if stage not in self._windows:
            rows = self.rows(stage)
            self._windows[stage] = (rows, *windows_of(self.train, rows, self.max_len))
        return self._windows[stage]

    def mean_trained_positions(self, stage):
        """Trained positions per window over every window of stages 0..stage: what a window drawn
        at random from the stream holds on average (the memory's position budget, :mod:`.addressing`)."""
        counts = [trained_positions(self.windows(s)[2]) for s in range(stage + 1)]
        counts = torch.cat(counts) if counts else torch.zeros(0)
        return float(counts.float().mean()) if len(counts) else 0.0

    def targets_seen(self, stage):
        """Training targets (interactions predicted from a history) with time before the stage's end."""
        return int((self.all_times < self.ends[stage]).sum())

    # ----- what judges a stage -----
    def period(self, stage):
        """``(dataset, rows)`` of the period after ``stage``: samples in the next slice, or the validation split."""
        if stage == self.n_stages - 1:
            dataset = self.ctx.valid_data.dataset
            return dataset, np.arange(len(dataset))
        low, high = self.ends[stage], self.ends[stage + 1]
        return self.ctx.dataset, np.flatnonzero((self.all_times >= low) & (self.all_times < high))

    def halves_of(self, stage):
        """``(selection rows, report rows)`` of the period after ``stage``; the selection half is
        capped at ``distilled_valid_subsample`` rows (seeded) when that is set, as for any small set."""
        dataset, rows = self.period(stage)
        users = dataset.inter_feat[dataset.uid_field][torch.as_tensor(rows, dtype=torch.long)]
        chosen = self.halves[users].numpy()
        selection, report = rows[chosen], rows[~chosen]
        cap = self.ctx.config["distilled_valid_subsample"]
        if cap and cap < len(selection):
            keep = torch.randperm(len(selection), generator=torch.Generator().manual_seed(self.ctx.config["seed"]))
            selection = np.sort(selection[keep[:cap].numpy()])
        return selection, report

    def loaders(self, stage):
        """``(selection, report)`` full-ranking eval dataloaders (RecBole's, as for the validation split)."""
        if stage not in self._loaders:
            dataset, _ = self.period(stage)
            self._loaders[stage] = tuple(self._loader(dataset, rows) for rows in self.halves_of(stage))
        return self._loaders[stage]

    def _loader(self, dataset, rows):
        full = self.ctx.valid_data
        subset = dataset.copy(dataset.inter_feat[torch.as_tensor(rows, dtype=torch.long)])
        return type(full)(self.ctx.config, subset, full._sampler, shuffle=False)

    def train_loader(self, rows):
        """A shuffling RecBole training dataloader over training rows (None when there are none)."""
        if len(rows) == 0:
            return None
        full = self.ctx.train_data
        subset = self.train.copy(self.train.inter_feat[torch.as_tensor(np.sort(rows), dtype=torch.long)])
        return type(full)(self.ctx.config, subset, full._sampler, shuffle=True)

    # ----- input checks that need the data (exit code 2 before anything is trained or written) -----
    def check(self, memory_size):
        first = len(self.rows(0))
        if memory_size > first:
            raise DatasetError(
                f"--diet_memory_size={memory_size} but the first of {self.n_stages} stages has only {first} training "
                f"rows (windows) to choose from; use a memory of at most {first} or fewer --diet_stages.")
        for stage in range(self.n_stages):
            for name, rows in zip(("selection", "report"), self.halves_of(stage)):
                if len(rows) == 0:
                    which = "the validation period" if stage == self.n_stages - 1 else f"slice {stage + 2}"
                    raise DatasetError(
                        f"DIET judges stage {stage + 1} on {which}, but its {name} half (users split by a "
                        f"seeded hash) has no rows; use fewer --diet_stages.")
