"""Windowed training samples: one sample per non-overlapping window of a user's history.

Models that learn from every position of a sample (TextSASRec with ``loss_all_positions``) see
each target once per epoch from these windows, the paper's sliding-window preprocessing, at
1/``MAX_ITEM_LIST_LENGTH`` of the compute of RecBole's one sample per prefix.
"""

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset


def window_rows(user_ids, max_len):
    """Rows of a user-grouped, time-ordered sample list that end non-overlapping windows.

    RecBole makes one sample per target (each prefix, truncated to ``max_len`` items). Keeping
    every ``max_len``-th sample counted back from each user's last one, and training on every
    position of it, covers each target exactly once: the paper's sliding-window preprocessing,
    at 1/max_len of the compute.
    """
    user_ids = np.asarray(user_ids)
    boundaries = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1], True])
    keep = []
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        keep.extend(range(end - 1, start - 1, -max_len)[::-1])
    return np.asarray(keep, dtype=np.int64)


class WindowedSequentialDataset(SequentialDataset):
    """SequentialDataset whose training split keeps one sample per window (see :func:`window_rows`).

    Used for models that learn from every position of a sample (``trains_all_positions``);
    validation and test splits are RecBole's, unchanged.
    """

    def build(self):
        datasets = super().build()
        train = datasets[0]
        uid = train.inter_feat[train.uid_field].numpy()
        if len(uid) > 1 and (np.diff(uid) != 0).sum() + 1 != len(np.unique(uid)):
            raise RuntimeError("training samples are not grouped by user; cannot build windows.")
        keep = window_rows(uid, self.config["MAX_ITEM_LIST_LENGTH"])
        datasets[0] = train.copy(train.inter_feat[torch.from_numpy(keep)])
        return datasets


