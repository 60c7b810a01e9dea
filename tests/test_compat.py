"""Files written before the stage packages (commit e93afa1) still load: a Lightning checkpoint written by that
version's ``pretrain`` and a store written by its ``extract_from_checkpoint``, both made here by that version's
package (taken from the repository's history with ``git archive``) from ``tests/fixtures/legacy/config.yaml``
(tcn audio, resnet10t frames, landmarks standardised per speaker). Skipped, with the reason, where the history
does not hold that commit (a shallow clone).

Today's code re-extracts the old checkpoint and must reproduce the old store's vectors: the refactor moved code,
not numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint
from contrastive_mer.model.module import load_module
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.store.index import index_from_store
from tests.conftest import ROOT

CONFIG = ROOT / "tests" / "fixtures" / "legacy" / "config.yaml"
OLD = "e93afa15941969f7c4da89a69bafa30f4c049968"
VIEWS = ("audio", "video", "landmarks", "projections/audio", "fused/concat", "fused/mean")
#: run by the old package: pretrain one epoch (a real Lightning checkpoint), then extract every clip
OLD_SCRIPT = """
import sys
from contrastive_mer.config import load_config
from contrastive_mer.extraction import ExtractOptions, extract_from_checkpoint
from contrastive_mer.training import pretrain
result = pretrain(load_config(sys.argv[1]), sys.argv[2])
extract_from_checkpoint(result.checkpoint, sys.argv[3], None, [], ExtractOptions(progress=False))
"""


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, store) written by the package as it was at e93afa1."""
    has = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD}^{{commit}}"], capture_output=True)
    if has.returncode != 0:
        pytest.skip(f"the git history here does not hold {OLD[:7]} (a shallow clone?)")
    tmp = tmp_path_factory.mktemp("legacy")
    archive = tmp / "old.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), OLD, "contrastive_mer"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "old", filter="data")
    env = {**os.environ, "PYTHONPATH": str(tmp / "old")}
    store = tmp / "old.h5"
    proc = subprocess.run([sys.executable, "-c", OLD_SCRIPT, str(CONFIG), str(tmp / "run"), str(store)],
                          cwd=tmp, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "run" / "checkpoints" / "last.ckpt", store


def test_old_checkpoint_loads_with_its_config(legacy):
    module = load_module(str(legacy[0]))
    assert set(module.modalities) == {"audio", "video", "landmarks"}
    assert module.cfg.data.normalize.landmarks == "speaker"
    assert module.loss_fn.__class__.__name__ == "PairwiseInfoNCE"


def test_old_store_opens_and_indexes(legacy):
    with FeatureStore(legacy[1]) as store:
        assert len(store.ids) == 18
        for view in VIEWS:
            assert np.isfinite(store.view(view).vectors).all(), view
        index = index_from_store(store, "fused/mean")
    assert len(index) == 18


@pytest.fixture(scope="module")
def reextracted(legacy, tmp_path_factory):
    out = tmp_path_factory.mktemp("compat") / "today.h5"
    return extract_from_checkpoint(legacy[0], out, None, [], options=ExtractOptions(batch_size=6, progress=False))


@pytest.mark.parametrize("view", VIEWS)
def test_todays_extraction_of_the_old_checkpoint_equals_the_old_store(legacy, reextracted, view):
    with FeatureStore(legacy[1]) as old, FeatureStore(reextracted) as new:
        assert list(old.ids) == list(new.ids)
        np.testing.assert_allclose(new.view(view).vectors, old.view(view).vectors, rtol=1e-4, atol=1e-5)
