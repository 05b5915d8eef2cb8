"""Evaluation protocols: RecBole's leave-one-out (``loo``) and the paper's ``global_temporal`` split.

``eval_protocol: loo`` (default) is RecBole's own ``eval_args.split: {'LS': 'valid_and_test'}``:
each user's last interaction is the test target, the one before it the validation target, the
rest is training data.

``eval_protocol: global_temporal`` is FOSTER's absolute time-based 8:1:1 split (App. D.2):

* Cut points ``t1 < t2`` are the 80% and 90% quantiles (``numpy.quantile``, linear
  interpolation) of the timestamps of *all* interactions that survive RecBole's filtering and
  k-core, taken before the sequential augmentation drops each user's first interaction.
* Tie rule (half-open periods): training is ``t < t1``, validation ``t1 <= t < t2``, test
  ``t >= t2``. An interaction stamped exactly ``t1`` is validation, exactly ``t2`` test.
* Rows are RecBole's own sequential samples (``SequentialDataset.data_augmentation``): one per
  interaction that has at least one earlier interaction of the same user, with the last
  ``MAX_ITEM_LIST_LENGTH`` of those earlier interactions as its history. A row goes to the
  period of its *target*. So a training sample is a prefix of the user's pre-``t1`` history
  (input items and target all ``< t1``); a validation/test target is predicted from *all* of
  the user's earlier interactions, whatever their period (a test history may end with
  validation-period interactions), truncated to the last ``MAX_ITEM_LIST_LENGTH``. A user's
  first interaction has no history, so it is never a target (it only serves as history).
  "Earlier" is RecBole's order: the user's interactions sorted by timestamp, equal timestamps
  kept in file order (stable sort), exactly as for ``loo``; with distinct per-user timestamps
  every history item is strictly older than its target.
* With ``train_window`` on, the pre-``t1`` training samples are thinned to non-overlapping
  windows exactly as under ``loo`` (:func:`recbole_foster.dataset.windowing.window_rows`).
* Evaluation is RecBole's, untouched: each valid/test row is one full-ranking query whose single
  positive is its target. For sequential models RecBole's ``FullSortEvalDataLoader`` masks no
  history (``history_index`` is None; only the padding item 0 gets ``-inf``), under either
  protocol, so already-seen items stay rankable. Metrics average over rows, i.e. over
  targets: a user with several test-period interactions counts several times.

RecBole's ``eval_args.split`` is irrelevant here: the dataset's ``build`` never reads it, and
``create_dataset`` replaces it with a ``{'global_temporal': [0.8, 0.1, 0.1]}`` marker so no
code path can fall back to an LS split silently (RecBole's ``Dataset.build`` would reject the
marker) and the logged/stored config says which split was used.
"""

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.utils import ModelType

from recbole_foster.config import GLOBAL_TEMPORAL_RATIOS
from recbole_foster.dataset.checks import DatasetError
from recbole_foster.dataset.windowing import WindowedSequentialDataset

EVAL_PROTOCOLS = ("loo", "global_temporal")


def eval_protocol_of(config):
    """The configured protocol ('loo' when unset); a clear ValueError for anything else."""
    try:
        protocol = config["eval_protocol"]
    except KeyError:
        protocol = None
    if protocol is None:
        return "loo"
    if protocol not in EVAL_PROTOCOLS:
        raise DatasetError(
            f"unknown eval_protocol {protocol!r}; choose 'loo' (RecBole leave-one-out, the "
            "default) or 'global_temporal' (the paper's absolute time-based 8:1:1 split)."
        )
    return protocol


def global_cut_points(timestamps, ratios=GLOBAL_TEMPORAL_RATIOS):
    """``(t1, t2)``: the quantiles of ``timestamps`` that end the training and validation periods."""
    ratios = np.asarray(ratios, dtype=np.float64) / np.sum(ratios)
    q1, q2 = ratios[0], ratios[0] + ratios[1]
    t1, t2 = np.quantile(np.asarray(timestamps, dtype=np.float64), [q1, q2])
    return float(t1), float(t2)


def split_rows_by_time(user_ids, target_times, t1, t2):
    """Row indices ``[train, valid, test]`` of samples whose target time is ``< t1``,
    in ``[t1, t2)`` and ``>= t2``.

    Rows come back grouped by user (users in order of first appearance, rows of a user in their
    original order), as RecBole's leave-one-out groups them; windowing relies on it.
    """
    user_ids = np.asarray(user_ids)
    times = np.asarray(target_times, dtype=np.float64)
    if len(user_ids) == 0:
        return [np.zeros(0, dtype=np.int64)] * 3
    _, inverse = np.unique(user_ids, return_inverse=True)
    first_row = np.full(inverse.max() + 1, len(user_ids), dtype=np.int64)
    np.minimum.at(first_row, inverse, np.arange(len(user_ids)))
    order = np.argsort(first_row[inverse], kind="stable")
    t = times[order]
    return [order[t < t1], order[(t >= t1) & (t < t2)], order[t >= t2]]


class GlobalTemporalSequentialDataset(SequentialDataset):
    """SequentialDataset split by two global cut points in time (see the module docstring).

    ``build`` returns ``[train, valid, test]`` like RecBole's, so ``data_preparation``, the
    dataloaders and ``Trainer.evaluate`` work unchanged. ``cut_points`` holds ``(t1, t2)``.
    """

    ratios = GLOBAL_TEMPORAL_RATIOS

    def _data_processing(self):
        if self.time_field is None or self.time_field not in self.inter_feat:
            columns = list(self.inter_feat.columns)
            raise DatasetError(
                f"eval_protocol=global_temporal splits by time, but dataset '{self.dataset_name}' "
                f"has no timestamp loaded (TIME_FIELD={self.time_field!r}; interaction columns: "
                f"{columns}). Load the timestamp column (load_col['inter'] and TIME_FIELD), or use "
                "--eval_protocol=loo."
            )
        super()._data_processing()

    def data_augmentation(self):
        # All interactions are still here (augmentation drops each user's first one), in the
        # tensor dtype the split compares against.
        self.cut_points = global_cut_points(self.inter_feat[self.time_field].numpy(), self.ratios)
        super().data_augmentation()

    def build(self):
        self._change_feat_format()
        if self.benchmark_filename_list is not None:
            raise DatasetError(
                "eval_protocol=global_temporal computes its own split; it cannot be combined with "
                "benchmark_filename (pre-split files). Use --eval_protocol=loo."
            )
        self.sort(by=self.time_field)  # as RecBole's TO ordering (stable: per-user order kept)
        t1, t2 = self.cut_points
        parts = split_rows_by_time(
            self.inter_feat[self.uid_field].numpy(), self.inter_feat[self.time_field].numpy(), t1, t2
        )
        for name, rows in zip(("training", "validation", "test"), parts):
            if len(rows) == 0:
                raise DatasetError(
                    f"eval_protocol=global_temporal: the {name} period (cut points t1={t1}, t2={t2}) "
                    f"has no samples in dataset '{self.dataset_name}'; too few distinct timestamps?"
                )
        self.logger.info(
            f"global_temporal split: t1={t1} t2={t2}; samples train={len(parts[0])} (before windowing) "
            f"valid={len(parts[1])} test={len(parts[2])}"
        )
        self._drop_unused_col()
        return [self.copy(self.inter_feat[torch.from_numpy(rows)]) for rows in parts]


class WindowedGlobalTemporalSequentialDataset(WindowedSequentialDataset, GlobalTemporalSequentialDataset):
    """The global temporal split with the windowed training samples of :class:`WindowedSequentialDataset`
    (MRO: the windowing runs on the pre-``t1`` training split)."""


def global_temporal_dataset(config, windowed):
    """The dataset for ``eval_protocol: global_temporal`` (``FosterConfig`` has pinned ``eval_args.split``)."""
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        raise DatasetError(
            f"eval_protocol=global_temporal is implemented for sequential models; {config['model']} "
            "is not one. Use --eval_protocol=loo."
        )
    split = config["eval_args"]["split"]
    if split != {"global_temporal": list(GLOBAL_TEMPORAL_RATIOS)}:
        raise DatasetError(f"eval_protocol=global_temporal needs a FosterConfig (it pins eval_args.split); "
                           f"this config splits by {split}.")
    cls = WindowedGlobalTemporalSequentialDataset if windowed else GlobalTemporalSequentialDataset
    return cls(config)
