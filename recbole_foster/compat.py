"""Shims that make RecBole 1.2.1 run on a newer stack (numpy 2, pandas 3, torch >= 2.6).

RecBole 1.2.1 was released before numpy 2, pandas 3 copy-on-write and torch's
``weights_only=True`` default. setup.py caps numpy, pandas and setuptools so that plain RecBole
works where this package is installed; these shims keep the plugin itself working where those
caps were overridden (a newer stack installed on purpose). Each one patches only what is missing
or broken, once, when :mod:`recbole_foster` is imported, and changes nothing on numpy < 2 or
pandas < 3:

* numpy 2 removed ``np.float_``/``np.complex_``/``np.unicode_`` (used by
  ``Config.compatibility_settings``) and ``np.float``/``np.int``/``np.bool`` (used by the
  metrics and ``Interaction``). We restore the missing aliases.
* pandas 3 always copies on write, so ``df[col].fillna(..., inplace=True)`` no longer changes
  ``df``. RecBole relies on it in ``Dataset._load_feat`` (empty token_seq text stays NaN and
  crashes on ``.split``) and ``Dataset._fill_nan``. We fill those columns by assignment.
  pandas 3's ``Series.agg(len)`` also returns the Series length instead of per-row lengths,
  which breaks ``Dataset._remap`` of token_seq columns (item texts); we use ``map(len)``.
* torch >= 2.6 loads with ``weights_only=True``; RecBole pickles its ``Config`` into
  checkpoints, so ``Trainer.evaluate(load_best_model=True)`` and ``resume_checkpoint`` fail.
  That one is fixed where checkpoints are written: see :mod:`recbole_foster.trainer`. Plain
  RecBole needs torch's own switch, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.
* ``recbole.quick_start`` imports ray, which needs ``pkg_resources`` (setuptools < 81); the
  plugin never imports it.
"""

import numpy as np
import pandas as pd

_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "float": float,
    "int": int,
    "bool": bool,
    "complex": complex,
    "object": object,
    "str": str,
    "long": int,
}


def patch_numpy_aliases():
    """Restore the numpy < 2 aliases RecBole uses (only those that are missing)."""
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


class _PandasFillingSeqNaN:
    """Stand-in for the ``pd`` module inside ``recbole.data.dataset.dataset``.

    Identical to pandas except that ``read_csv`` fills missing ``*_seq`` columns with "",
    which is what RecBole's (now no-op) inplace ``fillna`` meant to do.
    """

    def __getattr__(self, name):
        return getattr(pd, name)

    @staticmethod
    def read_csv(*args, **kwargs):
        df = pd.read_csv(*args, **kwargs)
        for column in df.columns:
            if str(column).endswith("_seq"):
                df[column] = df[column].fillna("")
        return df


def _fill_nan_by_assignment(self):
    """Copy-on-write-safe version of ``recbole.data.dataset.Dataset._fill_nan``."""
    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(
                    lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x
                )


def _remap_with_elementwise_lengths(self, remap_list):
    """``Dataset._remap`` with ``Series.map(len)``: pandas 3's ``Series.agg(len)`` is the
    length of the whole Series, which made RecBole split token_seq ids at the wrong points."""
    if len(remap_list) == 0:
        return
    tokens, split_point = self._concat_remaped_tokens(remap_list)
    new_ids_list, mp = pd.factorize(tokens)
    new_ids_list = np.split(new_ids_list + 1, split_point)
    mp = np.array(["[PAD]"] + list(mp))
    token_id = {t: i for i, t in enumerate(mp)}
    from recbole.utils import FeatureType

    for (feat, field, ftype), new_ids in zip(remap_list, new_ids_list):
        if field not in self.field2id_token:
            self.field2id_token[field] = mp
            self.field2token_id[field] = token_id
        if ftype == FeatureType.TOKEN:
            feat[field] = new_ids
        elif ftype == FeatureType.TOKEN_SEQ:
            split_point = np.cumsum(feat[field].map(len).to_numpy())[:-1]
            feat[field] = pd.Series(np.split(new_ids, split_point), index=feat.index, dtype=object)


def pandas_copies_on_write():
    """pandas >= 3 (copy-on-write always on), where RecBole's inplace ``fillna`` does nothing."""
    return int(pd.__version__.split(".")[0]) >= 3


def patch_pandas_3():
    """Copy-on-write ``fillna`` and whole-Series ``agg(len)`` in dataset loading (pandas >= 3 only)."""
    if not pandas_copies_on_write():
        return
    import recbole.data.dataset.dataset as dataset_module

    if not isinstance(dataset_module.pd, _PandasFillingSeqNaN):
        dataset_module.pd = _PandasFillingSeqNaN()
    dataset_module.Dataset._fill_nan = _fill_nan_by_assignment
    dataset_module.Dataset._remap = _remap_with_elementwise_lengths


def keep_anomaly_detection():
    """Import RecBole models inside this: RecBole's ``sine.py`` calls
    ``torch.autograd.set_detect_anomaly(True)`` at import, for the whole process, and any import
    of ``recbole.model.sequential_recommender`` runs it. Every later autograd op then records a
    stack trace (about 3x slower training, same numbers); this restores the mode on exit."""
    import torch

    return torch.autograd.set_detect_anomaly(torch.is_anomaly_enabled())


def apply():
    """Apply every shim; safe to call more than once."""
    import warnings

    # RecBole's no-op inplace fillna still warns; read_csv above already filled those columns.
    warnings.filterwarnings("ignore", category=getattr(pd.errors, "ChainedAssignmentError", Warning),
                            module="recbole")
    # pandas 2 and torch deprecations inside RecBole's own code, which a user cannot act on
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")
    patch_numpy_aliases()
    patch_pandas_3()
