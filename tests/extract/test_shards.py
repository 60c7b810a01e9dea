"""Sharded extraction and the shard merge: equality with one process, refusals, crash safety, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from contrastive_mer.config import to_dict
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
from contrastive_mer.data.sample import Sample
from contrastive_mer.experiment import config_from_dict
from contrastive_mer.extract.extraction import ExtractOptions, extract
from contrastive_mer.extract.shards import resolve_shard, shard_records
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.store.hdf5 import FeatureStore, IncompleteStoreError
from contrastive_mer.store.merge import ShardMergeError, find_shards, merge_shards, shard_store_path
from tests.conftest import ROOT

N_CLIPS = 23
BAD_CLIP = "clip13"  # its voice input is NaN: skipped by the dataset, listed in the skip report


@register_adapter("shard_test_vectors")
class ShardTestCorpus(CorpusAdapter):
    """Seeded random vectors: ``face`` (8,) per clip, ``voice`` (T, 6) frames; some clips lack one of them."""

    name = "shard_test_vectors"
    modalities = ("face", "voice")

    def __init__(self, num_clips: int = N_CLIPS, seed: int = 0):
        super().__init__()
        self.label_names = {"emotion": ["neutral", "happy", "sad"]}
        self.num_clips, self.seed = num_clips, seed

    def records(self) -> list[ClipRecord]:
        # listed in a shuffled order, with unpadded numbers: id order differs from listing and numeric order
        order = np.random.default_rng(self.seed).permutation(self.num_clips)
        return [ClipRecord(f"clip{k}", {"face": int(k), "voice": int(k)},
                           {"emotion": int(k % 3), "arousal": float(k) / 7, "flags": [float(k % 2), 1.0]},
                           {"speaker": f"s{k % 4}", "session": f"x{k % 2}"}) for k in order]

    def load(self, record: ClipRecord, modalities) -> Sample:
        k = int(record.sources["face"])
        rng = np.random.default_rng([self.seed, k])
        face = rng.normal(size=8).astype(np.float32)
        voice = rng.normal(size=(int(rng.integers(2, 9)), 6)).astype(np.float32)
        if record.id == BAD_CLIP:
            voice[:] = np.nan
        inputs = {}
        if "face" in modalities and k % 5 != 1:
            inputs["face"] = face
        if "voice" in modalities and k % 7 != 3:
            inputs["voice"] = voice
        return Sample(record.id, inputs, dict(record.labels), dict(record.groups))


def make_cfg(**data):
    return config_from_dict({
        "name": "shards", "seed": 0,
        "data": {"dataset": "shard_test_vectors", "options": {"num_clips": N_CLIPS}, "cache": "none", **data},
        "model": {"modalities": {
            "face": {"encoder": "mlp", "encoder_args": {"input_dim": 8, "hidden_dims": [16], "output_dim": 12}},
            "voice": {"encoder": "mlp", "encoder_args": {"input_dim": 6, "hidden_dims": [16], "output_dim": 10},
                      "preprocess": {"sequence": True}}},
            "head": {"hidden_dim": 16, "output_dim": 8}}})


def opts(**kw) -> ExtractOptions:
    return ExtractOptions(**{"batch_size": 4, "progress": False, "sequences": ("voice",), "part_rows": 3, **kw})


@pytest.fixture(scope="module")
def model():
    cfg = make_cfg()
    torch.manual_seed(0)
    return cfg, PairwiseContrastiveModule(cfg).eval()


@pytest.fixture(scope="module")
def single(model, tmp_path_factory):
    cfg, module = model
    return extract(module, cfg, tmp_path_factory.mktemp("single") / "one.h5", opts(batch_size=5),
                   checkpoint_sha256="abc")


def extract_shards(model, out: Path, n: int, **kw) -> list[Path]:
    cfg, module = model
    return [extract(module, cfg, out, opts(shard_index=i, num_shards=n, **kw), checkpoint_sha256="abc")
            for i in range(n)]


def assert_same_rows(merged: Path, reference: Path) -> None:
    """``merged`` holds the rows of ``reference`` sorted by id, with equal contents."""
    with FeatureStore(merged) as b, FeatureStore(reference) as a:
        ref_ids = list(a.ids)
        assert list(b.ids) == sorted(ref_ids)
        rows = [ref_ids.index(i) for i in b.ids]  # naive reorder of the reference
        for m in a.modalities:
            np.testing.assert_allclose(b.features(m), a.features(m)[rows], atol=1e-6)
            np.testing.assert_allclose(b.projections(m), a.projections(m)[rows], atol=1e-6)
            np.testing.assert_array_equal(b.present(m), a.present(m)[rows])
        for mode in a.fused_modes():
            np.testing.assert_allclose(b.fused(mode), a.fused(mode)[rows], atol=1e-6)
        for name in a.label_names():
            np.testing.assert_array_equal(b.labels(name), a.labels(name)[rows])
            assert b.class_names(name) == a.class_names(name)
        for name in a.group_names():
            assert list(b.groups(name)) == list(a.groups(name)[rows])
        for j, r in enumerate(rows):
            np.testing.assert_allclose(b.sequence("voice", j), a.sequence("voice", r), atol=2e-3)
        assert b.attrs["schema"] == a.attrs["schema"] and b.attrs["config"] == a.attrs["config"]
        assert b.attrs["checkpoint_sha256"] == a.attrs["checkpoint_sha256"]
        assert b.attrs["complete"] is True and "shard_index" not in b.attrs and "num_shards" not in b.attrs


@pytest.mark.parametrize("n", [2, 3])
def test_merged_shards_equal_a_single_process_extraction(model, single, tmp_path, n):
    out = tmp_path / "feats.h5"
    paths = extract_shards(model, out, n)
    assert paths == [shard_store_path(out, i, n) for i in range(n)] == find_shards(out)
    all_ids = sorted(f"clip{k}" for k in range(N_CLIPS))
    for i, p in enumerate(paths):  # shard i holds positions i, i+n, ... of the id order (the bad clip skipped)
        with FeatureStore(p) as s:
            assert list(s.ids) == [x for x in all_ids[i::n] if x != BAD_CLIP]
            assert (s.attrs["shard_index"], s.attrs["num_shards"]) == (i, n)
    with FeatureStore(single) as a:
        assert list(a.ids) != sorted(a.ids)  # the reference is in listing order: the merge really sorts
    merged = merge_shards(find_shards(out), out, block_bytes=200)  # tiny blocks: many streaming steps
    assert_same_rows(merged, single)
    assert BAD_CLIP in out.with_name(out.name + ".skipped.jsonl").read_text()
    # the merged store is a finished store of the unsharded extraction: extracting again resumes to nothing
    cfg, module = model
    assert extract(module, cfg, out, opts(), checkpoint_sha256="abc") == out
    assert_same_rows(out, single)


def test_missing_or_incomplete_shard_is_refused(model, tmp_path, monkeypatch):
    cfg, module = model
    out = tmp_path / "feats.h5"
    extract(module, cfg, out, opts(shard_index=0, num_shards=2))
    with pytest.raises(FileNotFoundError, match=r"feats\.shard-1-of-2\.h5"):
        merge_shards(find_shards(out), out)
    with pytest.raises(ShardMergeError, match=r"missing shard index\(es\) \[1\] of 2"):
        merge_shards([shard_store_path(out, 0, 2)], out)
    # shard 1 dies before finishing: only its .parts folder exists
    from contrastive_mer.store import hdf5

    def crash(self):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(hdf5.FeatureStoreWriter, "finish", crash)
    with pytest.raises(KeyboardInterrupt):
        extract(module, cfg, out, opts(shard_index=1, num_shards=2))
    monkeypatch.undo()
    with pytest.raises(IncompleteStoreError, match=r"shard .*feats\.shard-1-of-2\.h5 is unfinished"):
        merge_shards(find_shards(out), out)
    assert not out.exists()
    # a file whose complete flag is false
    extract(module, cfg, out, opts(shard_index=1, num_shards=2))  # resumes and finishes
    with h5py.File(shard_store_path(out, 1, 2), "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(IncompleteStoreError, match=r"feats\.shard-1-of-2\.h5 is incomplete"):
        merge_shards(find_shards(out), out)
    with h5py.File(shard_store_path(out, 1, 2), "a") as f:
        f.attrs["complete"] = True
    merge_shards(find_shards(out), out)
    with FeatureStore(out) as s:
        assert len(s) == N_CLIPS - 1
    with pytest.raises(FileExistsError, match="overwrite"):
        merge_shards(find_shards(out), out)
    # a stale shard of another sharding next to them
    shard_store_path(out, 2, 3).write_bytes(b"")
    with pytest.raises(ShardMergeError, match=r"different shard counts \[2, 3\]"):
        find_shards(out)


@pytest.mark.parametrize("change, field", [
    ({"checkpoint_sha256": "other"}, "attrs.checkpoint_sha256"),
    ({"fusion_modes": ("concat",)}, "fused_dims"),
    ({"sequences": ()}, "sequence_dims"),
    ({"cfg": {"batch_size": 7}}, "attrs.config"),
])
def test_schema_mismatch_is_refused(model, tmp_path, change, field):
    cfg, module = model
    out = tmp_path / "feats.h5"
    extract(module, cfg, out, opts(shard_index=0, num_shards=2), checkpoint_sha256="abc")
    sha = change.pop("checkpoint_sha256", "abc")
    other_cfg = make_cfg(**change.pop("cfg", {}))
    extract(module, other_cfg, out, opts(shard_index=1, num_shards=2, **change), checkpoint_sha256=sha)
    with pytest.raises(ShardMergeError, match=rf"shard .*feats\.shard-1-of-2\.h5 does not match .*{field}"):
        merge_shards(find_shards(out), out)
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()


def test_duplicate_ids_are_refused(model, tmp_path):
    cfg, module = model
    records = ShardTestCorpus().records()
    a = extract(module, cfg, tmp_path / "a.h5", opts(), records=records[:10])
    b = extract(module, cfg, tmp_path / "b.h5", opts(), records=records[8:15])
    first_dup = min(records[8].id, records[9].id)
    with pytest.raises(ShardMergeError, match=rf"duplicate id '{first_dup}' in .*a\.h5 and .*b\.h5"):
        merge_shards([a, b], tmp_path / "ab.h5")
    # stores without shard attributes but disjoint ids merge (the same rows as extracting them together)
    c = extract(module, cfg, tmp_path / "c.h5", opts(), records=records[10:15])
    both = extract(module, cfg, tmp_path / "both.h5", opts(), records=records[:15])
    assert_same_rows(merge_shards([a, c], tmp_path / "ac.h5"), both)


def test_merge_of_unsorted_stores_by_row_reads(model, tmp_path, monkeypatch):
    """Stores in listing order (not id order), read row by row instead of in slices: the same result."""
    from contrastive_mer.store import merge

    cfg, module = model
    records = ShardTestCorpus().records()
    a = extract(module, cfg, tmp_path / "a.h5", opts(), records=records[::2])
    b = extract(module, cfg, tmp_path / "b.h5", opts(), records=records[1::2])
    everything = extract(module, cfg, tmp_path / "all.h5", opts(), records=records)
    monkeypatch.setattr(merge, "SPAN_SLACK", -10 ** 9)  # never one slice: fancy indexing / per-row reads
    monkeypatch.setattr(merge, "_REOPEN_BYTES", 0)  # reopen the shard files before every block
    assert_same_rows(merge_shards([b, a], tmp_path / "ab.h5", block_bytes=300), everything)


def test_interrupted_merge_leaves_nothing_complete(model, single, tmp_path, monkeypatch):
    out = tmp_path / "feats.h5"
    extract_shards(model, out, 2)
    from contrastive_mer.store import _layout

    calls = {"n": 0}
    original = _layout._append

    def failing_append(ds, arr):
        calls["n"] += 1
        if calls["n"] == 25:
            raise OSError("disk full")
        original(ds, arr)

    monkeypatch.setattr(_layout, "_append", failing_append)
    with pytest.raises(OSError, match="disk full"):
        merge_shards(find_shards(out), out, block_bytes=200)
    monkeypatch.undo()
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()
    merge_shards(find_shards(out), out)
    assert_same_rows(out, single)


KILL_SCRIPT = """
import sys, time
from contrastive_mer.store import _layout, merge
original = _layout._append
def slow(ds, arr):
    original(ds, arr)
    ds.file.flush()
    time.sleep(0.05)
_layout._append = slow
merge.merge_shards(merge.find_shards(sys.argv[1]), sys.argv[1], block_bytes=200)
"""


def test_killed_merge_leaves_nothing_complete_and_reruns(model, single, tmp_path):
    out = tmp_path / "feats.h5"
    extract_shards(model, out, 3)
    script = tmp_path / "slow_merge.py"
    script.write_text(KILL_SCRIPT)
    tmp = out.with_name(out.name + ".tmp")
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not tmp.exists():
        time.sleep(0.02)
    time.sleep(0.3)  # mid-merge: a few blocks written
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read()
    assert not out.exists()
    assert tmp.exists()
    with pytest.raises((IncompleteStoreError, OSError)):  # unfinished (or not even a valid HDF5 file yet)
        FeatureStore(tmp).close()
    merge_shards(find_shards(out), out)
    assert not tmp.exists()
    assert_same_rows(out, single)


def test_shard_assignment_and_resolution():
    records = ShardTestCorpus().records()
    ids = sorted(r.id for r in records)
    parts = [[r.id for r in shard_records(records, i, 3)] for i in range(3)]
    assert sorted(sum(parts, [])) == ids and all(p == ids[i::3] for i, p in enumerate(parts))
    with pytest.raises(ValueError, match="duplicate clip id 'clip3'"):
        shard_records(records + [ClipRecord("clip3", {})], 0, 2)
    assert resolve_shard(None, None) is None
    assert resolve_shard(1, 4) == (1, 4)
    assert resolve_shard("auto", None, {"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert resolve_shard("auto", 3, {"RANK": "0", "WORLD_SIZE": "3"}) == (0, 3)
    for index, count, env, msg in [
        ("auto", None, {}, "RANK and WORLD_SIZE"), ("auto", 2, {"RANK": "0", "WORLD_SIZE": "4"}, "WORLD_SIZE=4"),
        (1, None, {}, "needs --num-shards"), (2, 2, {}, r"not in \[0, 2\)"), (None, 3, {}, "needs --shard-index"),
        ("x", 2, {}, "integer or 'auto'"),
    ]:
        with pytest.raises(ValueError, match=msg):
            resolve_shard(index, count, env)


def test_cli_shards_under_torchrun_env_and_merge(model, single, tmp_path, monkeypatch, capsys):
    from contrastive_mer.cli.main import main

    cfg, module = model
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": to_dict(cfg)}}, ckpt)
    out = tmp_path / "cli.h5"
    base = ["extract", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress", "--sequences", "voice",
            "--batch-size", "3"]
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(base + ["--shard-index", "auto"]) == 0
        assert str(shard_store_path(out, rank, 2)) in capsys.readouterr().out
    assert main(["extract", "--merge-shards", str(out)]) == 0
    assert f"shards merged into {out}" in capsys.readouterr().out
    with FeatureStore(out) as b, FeatureStore(single) as a:
        assert list(b.ids) == sorted(a.ids)
        rows = [list(a.ids).index(i) for i in b.ids]
        np.testing.assert_allclose(b.features("face"), a.features("face")[rows], atol=1e-6)
    monkeypatch.delenv("RANK")
    assert main(base + ["--shard-index", "auto"]) == 2
    assert "RANK" in capsys.readouterr().err
    assert main(base + ["--shard-index", "5", "--num-shards", "2"]) == 2
    assert "not in [0, 2)" in capsys.readouterr().err
    shard_store_path(out, 1, 2).unlink()
    assert main(["extract", "--merge-shards", str(out), "--overwrite"]) == 2
    assert "cli.shard-1-of-2.h5 does not exist" in capsys.readouterr().err
