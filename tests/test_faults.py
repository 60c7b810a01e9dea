"""Faults and hostile inputs (issue 13): locked store writers, lone batch-norm rows, bad .npy and transcript
files, the skip threshold on small corpora, one-line errors from the ``cmer`` entry point."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_mer.config import load_config, to_dict
from contrastive_mer.data.datamodule import build_corpus
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
from contrastive_mer.data.sample import Sample
from contrastive_mer.module import PairwiseContrastiveModule
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter, OutputLockedError
from contrastive_mer.store.lock import lock_path_for
from tests.conftest import DEMO, ROOT, TINY, cli_error

EXTRACT_OVERRIDES = TINY + ["data.options.speakers=[0,1]"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    cfg = load_config(DEMO, EXTRACT_OVERRIDES)
    torch.manual_seed(0)
    module = PairwiseContrastiveModule(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": to_dict(cfg)}}, path)
    return path


# ------------------------------------------------------------------------------------------- 1. writer lock
PAUSED_EXTRACT = """
import os, sys, time
from contrastive_mer.store import hdf5
from contrastive_mer.extraction import ExtractOptions, extract_from_checkpoint
original = hdf5.FeatureStoreWriter.flush
def paused_flush(self):  # after its first part file, wait until the test says go (at most 120 s)
    original(self)
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[3]) and time.time() < deadline:
        time.sleep(0.05)
hdf5.FeatureStoreWriter.flush = paused_flush
extract_from_checkpoint(sys.argv[1], sys.argv[2], None, [], ExtractOptions(batch_size=4, part_rows=4,
                        progress=False))
"""


def test_second_extraction_to_the_same_store_fails_at_once(checkpoint: Path, tmp_path: Path) -> None:
    """Two processes extract to one --out: the second gets one line naming the store and the first's pid and
    exits 2 at once; the first finishes a store with every clip exactly once; the lock file goes with it."""
    script = tmp_path / "paused_extract.py"
    script.write_text(PAUSED_EXTRACT)
    out, go = tmp_path / "both.h5", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, str(script), str(checkpoint), str(out), str(go)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parts = out.with_name(out.name + ".parts")
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not list(parts.glob("part-*.h5")):
        time.sleep(0.05)
    assert first.poll() is None, first.stderr.read() if first.stderr else ""
    started = time.time()
    second = subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", "extract", "--checkpoint",
                             str(checkpoint), "--out", str(out), "--no-progress"],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert lines[0].startswith("cmer extract: error: ") and str(out) in lines[0]
    assert f"pid {first.pid}" in lines[0]
    assert first.poll() is None, "the second process must not wait for the first"
    assert time.time() - started < 60
    go.touch()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert not lock_path_for(out).exists()
    with FeatureStore(out) as store:
        ids = list(store.ids)
    records = build_corpus(load_config(DEMO, EXTRACT_OVERRIDES)).records()
    assert len(ids) == len(set(ids)) == len(records) and set(ids) == {r.id for r in records}  # each clip once
    # the lock went with the first process: a later writer of the same store opens it (resume: nothing to do)
    again = subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", "extract", "--checkpoint",
                            str(checkpoint), "--out", str(out), "--no-progress"],
                           capture_output=True, text=True, cwd=ROOT, env=env)
    assert again.returncode == 0, again.stderr


HOLD_LOCK = """
import sys
from contrastive_mer.store.hdf5 import FeatureStoreWriter
w = FeatureStoreWriter(sys.argv[1], ["a", "b"], {"a": 2, "b": 2}, None, fsync=False)
print("held", flush=True)
sys.stdin.read()
"""


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    """kill -9 of the holder frees the store for the next writer (the kernel drops the flock)."""
    out = tmp_path / "s.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            FeatureStoreWriter(out, ["a", "b"], {"a": 2, "b": 2}, None, fsync=False)
    finally:
        holder.kill()
        holder.wait()
    assert lock_path_for(out).exists()  # left behind by the killed process, but no longer locked
    w = FeatureStoreWriter(out, ["a", "b"], {"a": 2, "b": 2}, None, fsync=False)
    w.append(["x"], {}, {}, {"a": np.ones((1, 2)), "b": np.ones((1, 2))}, {},
             {"a": np.ones(1, bool), "b": np.ones(1, bool)}, {})
    w.finish()
    assert not lock_path_for(out).exists()
    with FeatureStore(out) as store:
        assert list(store.ids) == ["x"]


# ------------------------------------------------------------------------------------ 2. lone batch-norm rows
def _one_frame_module() -> PairwiseContrastiveModule:
    """The tiny demo model with 1-frame 32 px video: resnet10t's last batch norms see 1x1 maps per frame."""
    cfg = load_config(DEMO, TINY + ["model.modalities.video.preprocess.num_frames=1"])
    torch.manual_seed(0)
    return PairwiseContrastiveModule(cfg).train()


@pytest.mark.parametrize("present", [[False, True, False, False], [False, False, False, False], [True]])
def test_one_present_video_row_trains(present: list[bool]) -> None:
    """One present clip (or none, or a batch of one) meets batch norm in eval mode: no crash, running statistics
    untouched, output equal to the eval-mode encoder's on that row, gradients reach the norm's weights, and every
    layer is back in training mode afterwards."""
    module = _one_frame_module()
    encoder = module.encoders["video"]
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms
    before = [n.running_mean.clone() for n in norms]
    reference = copy.deepcopy(encoder).eval()
    x = torch.randn(len(present), 1, 3, 32, 32)
    mask = torch.tensor(present)
    out = module.encode_modality("video", x, None, mask)
    assert all(torch.equal(b, n.running_mean) for b, n in zip(before, norms))
    assert all(m.training for m in encoder.modules())
    rows = mask.nonzero().squeeze(1)
    with torch.no_grad():
        want = reference(x[rows]).feature if len(rows) else torch.zeros(0, out.feature.shape[1])
    torch.testing.assert_close(out.feature[rows].detach(), want)
    assert not out.feature[~mask].any()
    out.feature.sum().backward()
    assert all(n.weight.grad is not None for n in norms)


def test_two_present_rows_still_use_batch_statistics() -> None:
    """With two or more present rows batch norm trains as before (running statistics move)."""
    module = _one_frame_module()
    norm = next(m for m in module.encoders["video"].modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = norm.running_mean.clone()
    module.encode_modality("video", torch.randn(4, 1, 3, 32, 32), None, torch.tensor([True, True, False, False]))
    assert not torch.equal(before, norm.running_mean)


@register_adapter("lone_video")
class LoneVideo(CorpusAdapter):
    """16 clips with action-unit-like vectors; only clip 0 has (one-frame) video."""

    name = "lone_video"
    modalities = ("au", "video")

    def __init__(self, n: int = 16):
        super().__init__()
        self.n = n

    def records(self) -> list[ClipRecord]:
        return [ClipRecord(f"c{i:02d}", {"au": i, **({"video": i} if i == 0 else {})}, {}, {"speaker": f"s{i % 4}"})
                for i in range(self.n)]

    def load(self, record: ClipRecord, modalities: list[str]) -> Sample:
        rng = np.random.default_rng(int(record.id[1:]))
        inputs = {"au": rng.normal(size=6).astype(np.float32),
                  "video": rng.integers(0, 255, size=(1, 32, 32, 3), dtype=np.uint8)}
        return Sample(record.id, {m: inputs[m] for m in modalities if m in record.sources}, {}, record.groups)


def test_pretraining_with_one_video_clip_in_a_batch(tmp_path: Path) -> None:
    """Pretraining where one batch per epoch holds exactly one video clip runs to a checkpoint."""
    from contrastive_mer.training import pretrain

    overrides = [
        "data.dataset=lone_video", "data.val_fraction=0", "data.batch_size=8", "data.drop_last=false",
        "model.modalities.au.encoder=mlp", "model.modalities.au.encoder_args.input_dim=6",
        "model.modalities.au.encoder_args.output_dim=16", "model.modalities.video.encoder=timm_frames",
        "model.modalities.video.encoder_args.model_name=resnet10t",
        "model.modalities.video.encoder_args.model_kwargs.channels=[8,8,8,8]",
        "model.modalities.video.encoder_args.model_kwargs.stem_width=8",
        "model.modalities.video.encoder_args.output_dim=16", "model.modalities.video.preprocess.num_frames=1",
        "model.modalities.video.preprocess.size=32", "model.head.hidden_dim=16", "model.head.output_dim=8",
        "loss.pairs=[au-video]", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
    ]
    cfg = load_config(None, overrides)
    result = pretrain(cfg, tmp_path / "run")
    assert result.checkpoint.is_file()
