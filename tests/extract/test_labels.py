"""Label specs from records and from stores, and the missing-label fill, against hand-written expectations."""

from __future__ import annotations

import numpy as np
import torch

from contrastive_mer.data.datasets.base import ClipRecord
from contrastive_mer.extract.labels import fill_missing_labels, label_spec, label_specs, store_label_specs
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter, LabelSpec


class _Adapter:
    label_names = {"emotion": ["neutral", "happy"], "aus": ["AU01", "AU02", "AU04"]}


def _records() -> list[ClipRecord]:
    return [ClipRecord("a", {}, {"emotion": 1}, {"speaker": "s1"}),
            ClipRecord("b", {}, {"emotion": 0, "valence": 0.5, "aus": [1, 0, 1], "vec": (0.1, 0.2)}, {})]


def test_label_specs_from_records() -> None:
    specs = label_specs(_Adapter(), _records())
    assert specs == {"emotion": LabelSpec(("neutral", "happy")), "valence": LabelSpec(),
                     "aus": LabelSpec(("AU01", "AU02", "AU04"), multi_label=True, dim=3),
                     "vec": LabelSpec(None, multi_label=True, dim=2)}
    assert label_spec([], None) == LabelSpec(())  # empty class names: still categorical


def test_fill_missing_labels_uses_the_store_missing_values() -> None:
    specs = label_specs(_Adapter(), _records())
    out = fill_missing_labels({"emotion": torch.tensor([1, 0])}, specs, 2)
    np.testing.assert_array_equal(out["emotion"], [1, 0])
    np.testing.assert_array_equal(out["aus"], np.full((2, 3), np.nan, np.float32))
    assert out["valence"].shape == (2,) and np.isnan(out["valence"]).all()
    assert out["vec"].shape == (2, 2) and out["vec"].dtype == np.float32
    assert fill_missing_labels({}, {"emotion": specs["emotion"]}, 3)["emotion"].tolist() == [-1, -1, -1]


def test_store_label_specs_round_trip(tmp_path) -> None:
    specs = label_specs(_Adapter(), _records())
    writer = FeatureStoreWriter(tmp_path / "s.h5", ["audio"], {"audio": 2}, 2, fused_dims={}, labels=specs)
    writer.append(["a", "b"], fill_missing_labels({"emotion": np.array([1, 0])}, specs, 2), {},
                  {"audio": np.ones((2, 2), np.float32)}, projections={"audio": np.ones((2, 2), np.float32)},
                  present={"audio": np.ones(2, bool)}, fused={})
    with FeatureStore(writer.finish()) as store:
        assert store_label_specs(store) == specs
