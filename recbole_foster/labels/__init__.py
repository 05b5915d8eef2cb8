"""Label storages (``--label_storage``): how a saved small set keeps the soft labels it trains on.

One class per storage, one file each (:mod:`.teacher`, :mod:`.dense`, :mod:`.topk`,
:mod:`.text_code`, :mod:`.label_model`; :mod:`.hard` names sets without soft labels), all implementing
:class:`~recbole_foster.labels.base.LabelStorage`. :func:`register_storage` adds one (a class or an
instance) under its ``name``; :func:`get_storage` looks one up, including storages published by
other packages under the entry point group ``recbole_foster.label_storages``.
"""

from importlib.metadata import entry_points

from recbole_foster.labels.base import LabelStorage, window_label_mask
from recbole_foster.labels.dense import DenseStorage
from recbole_foster.labels.hard import HardStorage, SummaryStorage
from recbole_foster.labels.label_model import LabelModelStorage
from recbole_foster.labels.teacher import TeacherStorage
from recbole_foster.labels.text_code import code_rank, decode_text_code, fit_text_code
from recbole_foster.labels.text_code import TextCodeStorage
from recbole_foster.labels.topk import TopKStorage

__all__ = ["LabelStorage", "STORAGES", "code_rank", "compress", "decode_text_code", "expand", "fit_text_code",
           "get_storage", "label_kl", "register_storage", "storage_of", "stored_bytes", "storage_names",
           "window_label_mask"]

ENTRY_POINT_GROUP = "recbole_foster.label_storages"
STORAGES = {}


def register_storage(storage):
    """Register a :class:`LabelStorage` subclass (or instance) under its ``name``; returns it, so
    it can decorate a class."""
    instance = storage() if isinstance(storage, type) else storage
    if not instance.name:
        raise ValueError(f"{storage!r} has no name.")
    STORAGES[instance.name] = instance
    return storage


for _storage in (TeacherStorage, DenseStorage, TopKStorage, TextCodeStorage, LabelModelStorage, HardStorage,
                 SummaryStorage):
    register_storage(_storage)


def _load_entry_points():
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in STORAGES:
            register_storage(point.load())


def get_storage(name):
    """The storage registered as ``name``; a ValueError naming the choices otherwise."""
    if name not in STORAGES:
        _load_entry_points()
    if name not in STORAGES:
        raise ValueError(f"label_storage must be one of {storage_names()}, got {name!r}.")
    return STORAGES[name]


def storage_names(selectable=True):
    """Names ``--label_storage`` accepts (``selectable=False``: every registered storage)."""
    _load_entry_points()
    return tuple(name for name, s in STORAGES.items() if s.selectable or not selectable)


def storage_of(stored):
    """The storage whose tensors ``stored`` holds (None when nothing is stored)."""
    for storage in STORAGES.values():
        if storage.owns(stored):
            return storage
    return None


def compress(log_probs, mask, storage, k=None, item_text=None, **options):
    """``get_storage(storage).compress(...)``."""
    return get_storage(storage).compress(log_probs, mask, k, item_text, **options)


def expand(stored, n_items, item_text=None, sequences=None):
    """``(mask, (m, n, n_items) log-probs)`` of stored tensors, whichever storage wrote them
    (``sequences``: the windows they label, for a storage that ``needs_windows``)."""
    return storage_of(stored).expand(stored, n_items, item_text, sequences=sequences)


def stored_bytes(stored):
    return sum(t.numel() * t.element_size() for t in stored.values())


def label_kl(log_probs, kept_log_probs, mask):
    """Mean KL(label || kept label) per labelled position, in nats (0 = nothing lost), with
    ``kept_log_probs`` what :func:`expand` rebuilt. A diagnostic, not a predictor of training
    quality: on amazon-games, 5 windows, rank-2 text codes lose less KL than top-10 labels but
    train a worse model (docs/experiments.md)."""
    labels, kept = log_probs[mask][:, 1:], kept_log_probs.to(log_probs.device)[mask][:, 1:]
    if len(labels) == 0:
        return 0.0
    return (labels.exp() * (labels - kept)).sum(-1).mean().item()
