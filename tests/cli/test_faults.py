"""Faults and hostile inputs (issue 13): locked store writers, lone batch-norm rows, bad .npy and transcript
files, the skip threshold on small corpora, one-line errors from the ``cmer`` entry point."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contrastive_mer.config import to_dict
from contrastive_mer.data.datamodule import build_corpus
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
from contrastive_mer.data.sample import Sample
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter, OutputLockedError
from contrastive_mer.store.lock import lock_path_for
from contrastive_mer.store.rowlog import count_records
from tests.conftest import DEMO, ROOT, TINY, cli_error
from tests.extract.test_extraction import EXTRACT_OVERRIDES, checkpoint  # noqa: F401  (the tiny demo model's checkpoint)


def save_checkpoint(config: Any, path: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """A checkpoint as `cmer pretrain` writes one (weights + config), of an untrained model unless ``state``."""
    data = config if isinstance(config, dict) else to_dict(config)
    state = PairwiseContrastiveModule(data).state_dict() if state is None else state
    torch.save({"state_dict": state, "hyper_parameters": {"config": data}}, path)
    return path


# ------------------------------------------------------------------------------------------- 1. writer lock
PAUSED_EXTRACT = """
import os, sys, time
from contrastive_mer.store import hdf5
from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint
original = hdf5.FeatureStoreWriter.flush
def paused_flush(self):  # after its first part file, wait until the test says go (at most 120 s)
    original(self)
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[3]) and time.time() < deadline:
        time.sleep(0.05)
hdf5.FeatureStoreWriter.flush = paused_flush
extract_from_checkpoint(sys.argv[1], sys.argv[2], None, [], options=ExtractOptions(batch_size=4, part_rows=4,
                        progress=False))
"""


def test_second_extraction_to_the_same_store_fails_at_once(checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
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
    while time.time() < deadline and first.poll() is None and not count_records(parts / "rows.log"):
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
    w.append(["x"], {}, {}, {"a": np.ones((1, 2)), "b": np.ones((1, 2))}, projections={},
             present={"a": np.ones(1, bool), "b": np.ones(1, bool)}, fused={})
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
    """16 clips with action-unit-like and pose-like vectors; only clip 0 has (one-frame) video."""

    name = "lone_video"
    modalities = ("au", "pose", "video")

    def __init__(self, n: int = 16):
        super().__init__()
        self.n = n

    def records(self) -> list[ClipRecord]:
        return [ClipRecord(f"c{i:02d}", {"au": i, "pose": i, **({"video": i} if i == 0 else {})}, {},
                           {"speaker": f"s{i % 4}"}) for i in range(self.n)]

    def load(self, record: ClipRecord, modalities: list[str]) -> Sample:
        rng = np.random.default_rng(int(record.id[1:]))
        inputs = {"au": rng.normal(size=6).astype(np.float32), "pose": rng.normal(size=4).astype(np.float32),
                  "video": rng.integers(0, 255, size=(1, 32, 32, 3), dtype=np.uint8)}
        return Sample(record.id, {m: inputs[m] for m in modalities if m in record.sources}, {}, record.groups)


def test_pretraining_with_one_video_clip_in_a_batch(tmp_path: Path) -> None:
    """Pretraining where one batch per epoch holds exactly one video clip runs to a checkpoint (the au-pose pair
    trains; with au-video as the only pair, held by one clip, nothing could train: refused at start, issue 22)."""
    from contrastive_mer.errors import UserError
    from contrastive_mer.pretrain.loop import pretrain

    overrides = [
        "data.dataset=lone_video", "data.val_fraction=0", "data.batch_size=8", "data.drop_last=false",
        "model.modalities.au.encoder=mlp", "model.modalities.au.encoder_args.input_dim=6",
        "model.modalities.au.encoder_args.output_dim=16", "model.modalities.video.encoder=timm_frames",
        "model.modalities.video.encoder_args.model_name=resnet10t",
        "model.modalities.video.encoder_args.model_kwargs.channels=[8,8,8,8]",
        "model.modalities.video.encoder_args.model_kwargs.stem_width=8",
        "model.modalities.video.encoder_args.output_dim=16", "model.modalities.video.preprocess.num_frames=1",
        "model.modalities.video.preprocess.size=32", "model.head.hidden_dim=16", "model.head.output_dim=8",
        "model.modalities.pose.encoder=mlp", "model.modalities.pose.encoder_args.input_dim=4",
        "model.modalities.pose.encoder_args.output_dim=16", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    ]
    with pytest.raises(UserError, match="au-video: 1 "):
        pretrain(load_config(None, [*overrides, "loss.pairs=[au-video]"]), tmp_path / "refused")
    cfg = load_config(None, [*overrides, "loss.pairs=[au-video,au-pose]"])
    result = pretrain(cfg, tmp_path / "run")
    assert result.checkpoint.is_file()


# ------------------------------------------------------------------------ 3. bad .npy files, 5. transcripts
def _huge_header_npy(path: Path) -> None:
    """A .npy whose header declares 9,999,999,999 float32 values (37 GiB) over 16 bytes of data."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (9999999999,)})
        fh.write(b"\0" * 16)


def feature_corpus(root: Path, n: int, bad: dict[int, str] | None = None) -> Path:
    """A manifest of ``n`` clips with two .npy feature modalities (au (6,), pose (4,)) sharing a latent;
    ``bad`` maps a clip index to how its au file is broken: ``empty``, ``huge`` or ``short``."""
    bad = bad or {}
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["id,speaker,feat:au,feat:pose"]
    for i in range(n):
        z = rng.normal(size=2).astype(np.float32)
        au, pose = root / f"au{i:02d}.npy", root / f"pose{i:02d}.npy"
        np.save(au, np.concatenate([z, -z, z]) + 0.1 * rng.normal(size=6).astype(np.float32))
        np.save(pose, np.concatenate([z, z]) + 0.1 * rng.normal(size=4).astype(np.float32))
        if bad.get(i) == "empty":
            au.write_bytes(b"")
        elif bad.get(i) == "huge":
            _huge_header_npy(au)
        elif bad.get(i) == "short":
            au.write_bytes(au.read_bytes()[:-8])
        lines.append(f"c{i:02d},s{i % 4},{au.name},{pose.name}")
    manifest = root / "clips.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def feature_overrides(manifest: Path) -> list[str]:
    return ["data.dataset=manifest", f"data.options.path={manifest}", "data.val_fraction=0", "data.batch_size=8",
            "data.cache=none", "model.modalities.au.encoder=mlp", "model.modalities.au.encoder_args.input_dim=6",
            "model.modalities.au.encoder_args.hidden_dims=[16]", "model.modalities.au.encoder_args.output_dim=8",
            "model.modalities.pose.encoder=mlp", "model.modalities.pose.encoder_args.input_dim=4",
            "model.modalities.pose.encoder_args.hidden_dims=[16]", "model.modalities.pose.encoder_args.output_dim=8",
            "model.head.hidden_dim=16", "model.head.output_dim=8", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


def test_bad_npy_headers_are_refused_before_allocating(tmp_path: Path) -> None:
    """Empty, huge-header, truncated and pickled .npy files: a SampleError naming the file and the reason, and
    the huge one allocates nothing like its declared 37 GiB (tracemalloc peak under 1 MiB)."""
    import tracemalloc

    from contrastive_mer.data.datasets.base import SampleError
    from contrastive_mer.data.datasets.manifest import ManifestAdapter

    manifest = feature_corpus(tmp_path, 4, {0: "empty", 1: "huge", 2: "short"})
    adapter = ManifestAdapter(manifest)
    records = {r.id: r for r in adapter.records()}
    reasons = {"c00": "empty file", "c01": "over the limit", "c02": "truncated"}
    for sid, reason in reasons.items():
        tracemalloc.start()
        with pytest.raises(SampleError, match=reason) as info:
            adapter.load(records[sid], ["au", "pose"])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert info.value.path and info.value.path.endswith(f"au{sid[1:]}.npy") and peak < 1 << 20
    good = adapter.load(records["c03"], ["au", "pose"]).inputs
    np.testing.assert_array_equal(good["au"], np.load(tmp_path / "au03.npy"))  # numpy's own loader agrees
    np.save(tmp_path / "au03.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SampleError, match="Python objects"):
        adapter.load(records["c03"], ["au"])


def test_loader_matches_numpy_on_good_files(tmp_path: Path) -> None:
    """The checked loader returns what numpy.load returns (dtypes, byte orders, Fortran order, 0-d, empty)."""
    from contrastive_mer.data.safe_files import load_npy

    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.asfortranarray(np.arange(12.0).reshape(3, 4)),
              np.arange(5, dtype=">i4"), np.float64(2.5), np.zeros((0, 7), np.float16)]
    for i, a in enumerate(arrays):
        np.save(tmp_path / f"{i}.npy", a)
        got, want = load_npy(tmp_path / f"{i}.npy"), np.load(tmp_path / f"{i}.npy")
        assert got.dtype == want.dtype and got.shape == want.shape and got.flags.writeable
        np.testing.assert_array_equal(got, want)


def test_one_bad_npy_is_skipped_and_the_run_goes_on(tmp_path: Path) -> None:
    """Pretraining over 40 clips, one empty and one huge-header .npy among them (skip limit 20%): the run
    finishes and skipped.jsonl names both clips."""
    import json

    from contrastive_mer.pretrain.loop import pretrain

    manifest = feature_corpus(tmp_path / "corpus", 40, {3: "empty", 17: "huge"})
    result = pretrain(load_config(None, feature_overrides(manifest) + ["data.max_skip_fraction=0.2"]),
                      tmp_path / "run")
    assert result.checkpoint.is_file()
    lines = [json.loads(line) for line in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert {e["id"] for e in lines} == {"c03", "c17"}
    assert all(e["path"].endswith(".npy") for e in lines)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "folder", "too_big", "not_utf8"])
def test_hostile_transcript_paths_are_skipped(tmp_path: Path, kind: str) -> None:
    """A transcript path to /dev/zero, a FIFO, a folder, a 2 MB file or non-UTF-8 bytes is a clear skip reason,
    never an unbounded read or a hang; a normal transcript is read."""
    import signal

    from contrastive_mer.data.datasets.base import SampleError
    from contrastive_mer.data.datasets.manifest import ManifestAdapter

    target = {"dev_zero": Path("/dev/zero"), "fifo": tmp_path / "pipe", "folder": tmp_path / "dir",
              "too_big": tmp_path / "big.txt", "not_utf8": tmp_path / "latin.txt"}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    elif kind == "too_big":
        target.write_text("word " * 400_000)
    elif kind == "not_utf8":
        target.write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("  hello there \n")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,transcript\nok,ok.txt\nbad,{target}\n")
    adapter = ManifestAdapter(manifest)
    records = {r.id: r for r in adapter.records()}
    assert adapter.load(records["ok"], ["text"]).inputs["text"] == "hello there"
    reason = {"dev_zero": "character device", "fifo": "FIFO", "folder": "folder", "too_big": "exceeds the limit",
              "not_utf8": "not UTF-8"}[kind]
    signal.alarm(20)  # a hang fails the test instead of blocking the suite
    try:
        with pytest.raises(SampleError, match=reason):
            adapter.load(records["bad"], ["text"])
    finally:
        signal.alarm(0)


# ----------------------------------------------------------------------------------- 4. the skip threshold
def test_skip_limit_holds_on_small_corpora() -> None:
    """Below min_seen clips the limit still holds: 8 of 8 stop at once, 2 of 10 too (2/20 > 5%); 1 of 10 passes
    (1/20 is not over 5%), also at the final check; every clip skipped stops at the final check whatever the
    limit."""
    from contrastive_mer.data.dataset import SkipReport, TooManySkippedError
    from contrastive_mer.errors import UserError

    report = SkipReport(None, max_fraction=0.05)
    report.add([{"id": f"c{i}", "path": f"c{i}.npy", "reason": "bad\nfile"} for i in range(8)])
    with pytest.raises(TooManySkippedError, match="8 of 8 samples skipped") as info:
        report.check(8)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    one = SkipReport(None, max_fraction=0.05)
    one.add([{"id": "c0", "path": "", "reason": "bad"}])
    one.check(10)
    one.check(10, final=True)
    one.add([{"id": "c1", "path": "", "reason": "bad"}])
    with pytest.raises(TooManySkippedError, match="2 of 10"):
        one.check(10)
    lenient = SkipReport(None, max_fraction=1.0)
    lenient.add([{"id": f"c{i}", "path": "", "reason": "bad"} for i in range(3)])
    lenient.check(3)
    with pytest.raises(TooManySkippedError):
        lenient.check(3, final=True)
    SkipReport(None, max_fraction=0.0).check(5, final=True)  # nothing skipped: nothing to say


def test_all_bad_corpus_stops_pretraining_and_extraction(tmp_path: Path) -> None:
    """15 of 15 clips unreadable: `cmer pretrain` and `cmer extract` exit 2 with one line; no checkpoint and no
    store are written."""
    manifest = feature_corpus(tmp_path / "bad", 15, {i: "empty" for i in range(15)})
    run, config = tmp_path / "run", tmp_path / "faults.yaml"
    config.write_text("name: faults\n")
    line = cli_error("pretrain", "--config", str(config), *feature_overrides(manifest), "--output", str(run))
    assert "samples skipped" in line and "data.max_skip_fraction" in line
    assert not list(run.rglob("*.ckpt"))
    good = feature_corpus(tmp_path / "good", 8)
    ckpt = save_checkpoint(load_config(None, feature_overrides(good)), tmp_path / "m.ckpt")
    out = tmp_path / "f.h5"
    line = cli_error("extract", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress",
                     f"data.options.path={manifest}")
    assert "samples skipped" in line and "data.max_skip_fraction" in line
    assert not out.exists() and not lock_path_for(out).exists()


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_skip_fraction_out_of_range_is_a_config_error(value: str) -> None:
    line = cli_error("pretrain", "--config", str(DEMO), f"data.max_skip_fraction={value}")
    assert "data.max_skip_fraction" in line and "[0, 1]" in line


# --------------------------------------------------------------------------- 6. one-line errors, exit 2
def test_config_faults_are_one_line(tmp_path: Path) -> None:
    """YAML syntax errors, a top-level list and trainer.max_epochs=-5 end in one line naming the file or key."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: {batch_size: 3\nmodel: [\n")
    assert "YAML syntax error at line 2" in cli_error("pretrain", "--config", str(broken))
    listed = tmp_path / "list.yaml"
    listed.write_text("- data\n- model\n")
    assert "expected a mapping" in cli_error("pretrain", "--config", str(listed))
    assert "trainer.max_epochs: -5" in cli_error("pretrain", "--config", str(DEMO), "trainer.max_epochs=-5")
    assert "model.head.output_dim: 0" in cli_error("pretrain", "--config", str(DEMO), "model.head.output_dim=0")


class _Payload:
    """Anything a weights-only load must refuse (it needs unpickling code)."""


def test_checkpoint_and_store_faults_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Corrupt, truncated and pickled checkpoints, rerunning into a complete store with more clips, and a full
    disk while writing: one line, exit 2 (CMER_DEBUG=1 keeps the traceback)."""
    from contrastive_mer.store import rowlog

    good = feature_corpus(tmp_path / "corpus", 12)
    ckpt = save_checkpoint(load_config(None, feature_overrides(good)), tmp_path / "m.ckpt")
    garbage, truncated, pickled = tmp_path / "garbage.ckpt", tmp_path / "half.ckpt", tmp_path / "pickled.ckpt"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    torch.save({"state_dict": {}, "hyper_parameters": {"config": _Payload()}}, pickled)
    out = tmp_path / "f.h5"
    zipped = tmp_path / "zipped.ckpt"  # a valid zip container with a damaged pickle inside
    raw = bytearray(ckpt.read_bytes())
    raw[200:264] = b"\x00" * 64
    zipped.write_bytes(bytes(raw))
    flipped = tmp_path / "flipped.ckpt"  # bytes flipped inside a weight tensor: torch's reader would load it
    import zipfile

    with zipfile.ZipFile(ckpt) as archive:
        entry = max(archive.infolist(), key=lambda i: i.file_size)  # the largest weight tensor
        start = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra)
    raw = bytearray(ckpt.read_bytes())
    raw[start + entry.file_size // 2] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    for bad in (garbage, truncated, pickled, zipped, flipped):
        line = cli_error("extract", "--checkpoint", str(bad), "--out", str(out), "--no-progress")
        assert str(bad) in line and "checkpoint" in line
    assert "CRC-32" in line and entry.filename in line
    # a complete store, then a rerun over a corpus that has grown
    listing = good.read_text()
    good.write_text("\n".join(listing.splitlines()[:9]) + "\n")  # 8 of the 12 clips
    assert main_ok("extract", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress")
    good.write_text(listing)
    line = cli_error("extract", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress")
    assert "already complete" in line and "--overwrite" in line
    # the disk fills while rows are appended to the row log
    def full_disk(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rowlog.RowLog, "_write", full_disk)
    line = cli_error("extract", "--checkpoint", str(ckpt), "--out", str(tmp_path / "g.h5"), "--no-progress")
    assert "No space left on device" in line and "g.h5.parts" in line
    monkeypatch.setenv("CMER_DEBUG", "1")
    from contrastive_mer.cli.main import main

    with pytest.raises(OSError):
        main(["extract", "--checkpoint", str(ckpt), "--out", str(tmp_path / "h.h5"), "--no-progress"])


def main_ok(*argv: str) -> bool:
    """Run ``cmer ARGV`` in-process; True on exit status 0."""
    from contrastive_mer.cli.main import main

    return main(list(argv)) == 0


# ---------------------------------------------------------------------------------- 8. atomic checkpoints
def test_checkpoint_write_that_fails_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills half-way through a checkpoint: the old file of that name is intact, no temp file
    remains, nothing named *.ckpt is truncated; a normal save loads back equal (through Lightning's loader)."""
    from contrastive_mer.model import checkpoint_io
    from contrastive_mer.model.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "best-001.ckpt"
    first = {"state_dict": {"w": torch.arange(6.0)}, "epoch": 1}
    io.save_checkpoint(first, path)
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["state_dict"]["w"], first["state_dict"]["w"])
    real_save = torch.save

    def half_then_full(obj, fh, *args, **kwargs):
        import io as _io

        buffer = _io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        fh.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "epoch": 2}, path)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 3}, tmp_path / "checkpoints" / "best-002.ckpt")
    monkeypatch.setattr(checkpoint_io.torch, "save", real_save)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best-001.ckpt"]
    assert io.load_checkpoint(path)["epoch"] == 1
    import pytorch_lightning as pl

    trainer = pl.Trainer(plugins=[AtomicCheckpointIO()], logger=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # how a trainer takes it


# ------------------------------------------------------------------- 9. no interpolation from checkpoints
def test_checkpoint_config_interpolation_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``name: ${oc.env:SECRET}`` inside a shared checkpoint is refused, never resolved on the reader's machine."""
    monkeypatch.setenv("CMER_TEST_SECRET", "hunter2")
    good = feature_corpus(tmp_path / "corpus", 4)
    config = to_dict(load_config(None, feature_overrides(good)))
    state = PairwiseContrastiveModule(config).state_dict()
    config["name"] = "${oc.env:CMER_TEST_SECRET}"
    ckpt = save_checkpoint(config, tmp_path / "shared.ckpt", state)
    line = cli_error("extract", "--checkpoint", str(ckpt), "--out", str(tmp_path / "f.h5"), "--no-progress")
    assert "interpolation" in line and "name" in line and "hunter2" not in line
    assert not (tmp_path / "f.h5").exists()


# ------------------------------------------------------------------------------ 5. long multichannel audio
@pytest.mark.parametrize("ext", ["wav", "mka"])
def test_multichannel_audio_is_downmixed_as_it_is_decoded(tmp_path: Path, ext: str) -> None:
    """40 s of 6-channel 48 kHz audio with max_seconds unset: the decoder keeps one channel in memory (peak under
    half of the 6-channel float32 size, which the old decoder held twice over) and returns the mean of the
    channels, resampled, as numpy and scipy compute it from the whole file."""
    import tracemalloc

    import soundfile as sf
    from scipy.signal import resample_poly

    from contrastive_mer.data.media import load_audio

    rate, seconds, channels = 48000, 40, 6
    t = np.arange(rate * seconds) / rate
    wave = np.stack([0.1 * (c + 1) * np.sin(2 * np.pi * (220 + 50 * c) * t) for c in range(channels)], axis=1)
    path = tmp_path / f"long.{ext}"
    if ext == "wav":
        sf.write(path, wave.astype(np.float32), rate, subtype="FLOAT")
    else:  # through FFmpeg (PyAV), not libsndfile
        import av

        with av.open(str(path), "w") as out:
            stream = out.add_stream("pcm_f32le", rate=rate, layout="5.1")
            for start in range(0, len(wave), 4800):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[start:start + 4800].astype(np.float32)
                                                                        .reshape(1, -1)), format="flt",
                                                   layout="5.1")
                frame.sample_rate = rate
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    full = wave.size * 4
    tracemalloc.start()
    got = load_audio(path, sample_rate=16000, reject_silent=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < full / 2, (peak, full)
    decoded = sf.read(path, dtype="float32")[0] if ext == "wav" else wave.astype(np.float32)
    want = resample_poly(decoded.mean(axis=1, dtype=np.float64), 1, 3)
    assert got.shape == want.shape
    inner = slice(1000, -1000)  # resampler edges differ between torchaudio and scipy
    np.testing.assert_allclose(got[inner], want[inner], atol=2e-3)
