"""Labels between the dataset and the stores: how a label is stored (:class:`LabelSpec` from records or from a
store) and the fill value of a missing label."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter
from contrastive_mer.store.hdf5 import FeatureStore, LabelSpec
from contrastive_mer.utils import to_numpy

__all__ = ["fill_missing_labels", "label_spec", "label_specs", "store_label_specs"]


def label_spec(class_names: Sequence[str] | None, width: int | None = None) -> LabelSpec:
    """The spec of a label with ``class_names`` (None: no names) and ``width`` values per row (None: one):
    multi-label with a width, else categorical with names, else a float."""
    names = tuple(class_names) if class_names else None
    if width is not None:
        return LabelSpec(names, multi_label=True, dim=int(width))
    return LabelSpec(tuple(class_names)) if class_names is not None else LabelSpec()


def label_specs(adapter: CorpusAdapter, records: Sequence[ClipRecord]) -> dict[str, LabelSpec]:
    """Store label specs from the adapter's class names and the label values the records carry (the first
    record that carries a label decides its width)."""
    specs: dict[str, LabelSpec] = {}
    for r in records:
        for name, value in r.labels.items():
            if name not in specs:
                width = len(value) if isinstance(value, (list, tuple, np.ndarray)) else None
                specs[name] = label_spec(adapter.label_names.get(name), width)
    return specs


def store_label_specs(store: FeatureStore) -> dict[str, LabelSpec]:
    """The label specs of an existing store (to copy its labels into another store)."""
    specs = {}
    for name in store.label_names():
        values = store.labels(name)
        specs[name] = label_spec(store.class_names(name), values.shape[1] if values.ndim == 2 else None)
    return specs


def fill_missing_labels(labels: Mapping[str, Any], specs: Mapping[str, LabelSpec], n: int) -> dict[str, np.ndarray]:
    """One array of ``n`` rows per label of ``specs``: the batch's values where it has the label, else the
    store's missing value (-1 for categorical codes, NaN otherwise)."""
    out = {}
    for name, spec in specs.items():
        if name in labels:
            out[name] = to_numpy(labels[name])
        elif spec.kind == "categorical":
            out[name] = np.full(n, -1, dtype=np.int64)
        else:
            out[name] = np.full((n, spec.width) if spec.width else n, np.nan, dtype=np.float32)
    return out
