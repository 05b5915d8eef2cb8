"""Stage 2 of a run: the dataset (input checks, windowed training samples, split protocols).

``create_dataset(config)`` is RecBole's ``create_dataset`` with the checks of :mod:`.checks`
first and the split of :mod:`.protocol`; :mod:`.sequences` extracts each training user's window,
the pool that Random-N and the coresets choose from.
"""

from recbole.data import create_dataset as recbole_create_dataset

from recbole_foster.dataset.checks import DatasetError, check_atomic_files
from recbole_foster.dataset.protocol import eval_protocol_of, global_temporal_dataset
from recbole_foster.dataset.windowing import WindowedSequentialDataset, window_rows
from recbole_foster.config import uses_item_text

__all__ = ["DatasetError", "WindowedSequentialDataset", "create_dataset", "window_rows"]


def create_dataset(config, need_item_file=None):
    """RecBole's ``create_dataset`` after checking files and text fields (``need_item_file``: the
    run reads the item texts; by default when :func:`~recbole_foster.config.uses_item_text` says so).

    ``eval_protocol`` picks the split: ``loo`` (default) is RecBole's own (``eval_args.split``),
    ``global_temporal`` the paper's time-based 8:1:1 split (:mod:`recbole_foster.dataset.protocol`).
    Models that train on every position get the windowed training split when
    ``train_window`` is on (the default) and the loss covers every position (``loss_all_positions``); otherwise the dataset is RecBole's own.
    """
    protocol = eval_protocol_of(config)
    check_atomic_files(config, need_item_file=uses_item_text(config) if need_item_file is None else need_item_file)
    windowed = bool(getattr(config.model_class, "trains_all_positions", False) and config["train_window"]
                    and config["loss_all_positions"] is not False)
    if protocol == "global_temporal":
        return global_temporal_dataset(config, windowed)
    if windowed:
        return WindowedSequentialDataset(config)
    return recbole_create_dataset(config)


