"""Files written before the stage packages (commit e93afa1) still load: a Lightning checkpoint written by
``cmer pretrain`` and a store written by ``cmer extract`` of that version (``tests/fixtures/legacy``, made from
``tests/fixtures/legacy/config.yaml``: tcn audio, resnet10t frames, landmarks standardised per speaker).

Today's code re-extracts the old checkpoint and must reproduce the old store's vectors: the refactor moved code,
not numbers."""

from __future__ import annotations

import numpy as np
import pytest

from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint
from contrastive_mer.model.module import load_module
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.store.index import index_from_store
from tests.conftest import ROOT

LEGACY = ROOT / "tests" / "fixtures" / "legacy"
CKPT, STORE = LEGACY / "e93afa1.ckpt", LEGACY / "e93afa1.h5"
VIEWS = ("audio", "video", "landmarks", "projections/audio", "fused/concat", "fused/mean")


def test_old_checkpoint_loads_with_its_config():
    module = load_module(str(CKPT))
    assert set(module.modalities) == {"audio", "video", "landmarks"}
    assert module.cfg.data.normalize.landmarks == "speaker"
    assert module.loss_fn.__class__.__name__ == "PairwiseInfoNCE"


def test_old_store_opens_and_indexes(tmp_path):
    with FeatureStore(STORE) as store:
        assert len(store.ids) == 18
        for view in VIEWS:
            assert np.isfinite(store.view(view).vectors).all(), view
        index = index_from_store(store, "fused/mean")
    assert len(index) == 18


@pytest.fixture(scope="module")
def reextracted(tmp_path_factory):
    out = tmp_path_factory.mktemp("compat") / "today.h5"
    return extract_from_checkpoint(CKPT, out, None, [], options=ExtractOptions(batch_size=6, progress=False))


@pytest.mark.parametrize("view", VIEWS)
def test_todays_extraction_of_the_old_checkpoint_equals_the_old_store(reextracted, view):
    with FeatureStore(STORE) as old, FeatureStore(reextracted) as new:
        assert list(old.ids) == list(new.ids)
        np.testing.assert_allclose(new.view(view).vectors, old.view(view).vectors, rtol=1e-4, atol=1e-5)
