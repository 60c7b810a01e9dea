"""Extraction into the feature store: contents, resume after SIGKILL, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from contrastive_mer.config import to_dict
from contrastive_mer.experiment import load_config
from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.store.hdf5 import FeatureStore, IncompleteStoreError
from contrastive_mer.store.rowlog import count_records
from tests.conftest import DEMO, ROOT, TINY

EXTRACT_OVERRIDES = TINY + ["data.options.speakers=[0,1]", "data.options.missing_fraction=0.3"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = load_config(DEMO, EXTRACT_OVERRIDES)
    torch.manual_seed(0)
    module = PairwiseContrastiveModule(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": to_dict(cfg)}}, path)
    return path


def test_store_holds_what_the_model_computes(checkpoint, tmp_path):
    out = extract_from_checkpoint(checkpoint, tmp_path / "f.h5", None, [],
                                  options=ExtractOptions(batch_size=5, progress=False, sequences=("audio",)))
    from contrastive_mer.data.datamodule import MERDataModule
    from contrastive_mer.model.module import load_module

    module = load_module(str(checkpoint))
    dm = MERDataModule(module.cfg)
    dm.setup()
    with FeatureStore(out) as store:
        assert len(store) == len(set(store.ids)) == len(dm.records)
        assert store.attrs["checkpoint_sha256"] and "model:" in store.attrs["config"]
        assert store.class_names("emotion")[0] == "neutral"
        ids = list(store.ids)
        # recompute a few rows directly and compare
        items = [dm.train_set[i] for i in range(3)]
        from contrastive_mer.data.dataset import Collator

        batch = Collator(dm.preprocessors)(items)
        with torch.no_grad():
            outputs, proj = module.eval()(batch)
        for j, sid in enumerate(batch.ids):
            row = ids.index(sid)
            for m in module.modalities:
                assert store.present(m)[row] == batch.present[m][j]
                if batch.present[m][j]:
                    np.testing.assert_allclose(store.features(m)[row], outputs[m].feature[j].numpy(), atol=1e-4)
                    np.testing.assert_allclose(store.projections(m)[row], proj[m][j].numpy(), atol=1e-4)
                    assert abs(np.linalg.norm(store.projections(m)[row]) - 1) < 1e-4
                else:
                    assert not store.features(m)[row].any()
            if batch.present["audio"][j]:
                seq = store.sequence("audio", row)
                assert seq.shape[0] == outputs["audio"].sequence_lengths[j]
        assert store.fused("concat").shape[1] == sum(store.features(m).shape[1] for m in store.modalities)


KILL_SCRIPT = """
import sys, time
from contrastive_mer.store import hdf5
from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint
original = hdf5.FeatureStoreWriter.flush
def slow_flush(self):
    original(self)
    time.sleep(0.4)
hdf5.FeatureStoreWriter.flush = slow_flush
extract_from_checkpoint(sys.argv[1], sys.argv[2], None, [], options=ExtractOptions(batch_size=4, part_rows=4,
                        progress=False))
"""


def test_killed_extraction_resumes_to_the_same_store(checkpoint, tmp_path):
    script = tmp_path / "slow_extract.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "killed.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(checkpoint), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out.with_name(out.name + ".parts")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and count_records(parts / "rows.log") < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not out.exists()  # nothing that looks complete
    with pytest.raises(IncompleteStoreError):
        FeatureStore(out)
    partial = FeatureStore(out, allow_partial=True)
    n_partial = len(partial)
    partial.close()
    assert 0 < n_partial

    resumed = extract_from_checkpoint(checkpoint, out, None, [], options=ExtractOptions(batch_size=7, progress=False))
    straight = extract_from_checkpoint(checkpoint, tmp_path / "straight.h5", None, [],
                                       options=ExtractOptions(batch_size=7, progress=False))
    with FeatureStore(resumed) as a, FeatureStore(straight) as b:
        assert len(a) == len(set(a.ids)) == len(b)
        order = [list(a.ids).index(i) for i in b.ids]
        for m in b.modalities:
            np.testing.assert_allclose(a.features(m)[order], b.features(m), atol=1e-5)
            assert (a.present(m)[order] == b.present(m)).all()
        np.testing.assert_array_equal(a.labels("emotion")[order], b.labels("emotion"))


def test_cli_extract_and_model_override_refused(checkpoint, tmp_path):
    out = tmp_path / "cli.h5"
    weights = {"audio": 3.0, "video": 0.0, "text": 1.0}
    proc = subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", "extract", "--checkpoint",
                           str(checkpoint), "--out", str(out), "--no-progress", "--fusion", "mean",
                           "--fusion-weights", "audio=3,video=0,text=1", "data.options.speakers=[1]"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout
    with FeatureStore(out) as store:
        assert set(store.groups("speaker")) == {"s01"}
        assert store.fused_modes() == ["mean", "weighted"] and store.attrs["fusion_weights"] == weights
        # reference: weights renormalised over the modalities present in each row, on unit projections
        w = np.stack([weights[m] * store.present(m) for m in store.modalities], axis=1)
        w = w / np.where(w.sum(1, keepdims=True) > 0, w.sum(1, keepdims=True), 1)
        proj = np.stack([store.projections(m) for m in store.modalities], axis=1)
        np.testing.assert_allclose(store.fused("weighted"), (w[:, :, None] * proj).sum(1), atol=1e-5)
        assert not np.allclose(store.fused("weighted"), store.fused("mean"), atol=1e-3)
    unweighted = subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", "extract", "--checkpoint",
                                 str(checkpoint), "--out", str(tmp_path / "w.h5"), "--fusion", "weighted"],
                                capture_output=True, text=True, cwd=ROOT)
    assert unweighted.returncode == 2 and "needs a weight per modality" in unweighted.stderr
    assert len(unweighted.stderr.strip().splitlines()) == 1
    bad = subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", "extract", "--checkpoint",
                          str(checkpoint), "--out", str(tmp_path / "x.h5"), "model.head.output_dim=3"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "model.*" in bad.stderr
