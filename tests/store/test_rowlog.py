"""The fast store writer (row log + whole-chunk merge): same file content as a naive writer, resumes after a crash
at any byte, after SIGKILL mid-extraction and mid-merge, and syncs at most once per ``sync_seconds``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import contrastive_mer
from contrastive_mer.store import rowlog
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from tests.store.test_hdf5 import DIMS, MODS, append_rows, assert_same_file, make_rows, writer_kwargs

REPO = Path(__file__).resolve().parents[2]


def naive_store(path: Path, rows: dict, sequence_dtype: str = "float32") -> None:
    """The store's layout written the plain way: each dataset from the whole concatenated input at once."""
    n = len(rows["ids"])
    s = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f["ids"] = np.array(rows["ids"], dtype=s)
        f["labels/emotion"] = rows["emotion"].astype(np.int64)
        f["labels/emotion"].attrs["kind"] = "categorical"
        f["labels/valence"] = rows["valence"].astype(np.float32)
        f["labels/multi"] = rows["multi"].astype(np.float32)
        f["groups/speaker"] = np.array(rows["speaker"], dtype=s)
        for m in MODS:
            f[f"features/{m}"] = rows["features"][m].astype(np.float32)
            f[f"projections/{m}"] = rows["projections"][m].astype(np.float32)
            f[f"present/{m}"] = rows["present"][m].astype(bool)
        f["fused/concat"] = rows["fused"]["concat"].astype(np.float32)
        f["sequences/audio"] = np.concatenate([np.zeros((0, DIMS["audio"]))] + rows["seq"]).astype(sequence_dtype)
        f["sequences/audio_offsets"] = np.concatenate([[0], np.cumsum([len(q) for q in rows["seq"]])]).astype(np.int64)
        assert len(f["ids"]) == n


def assert_same_content(store: Path, reference: Path) -> None:
    """Same dataset names, dtypes, shapes and values (NaN = NaN); labels keep their kind and class names."""
    with h5py.File(store, "r") as a, h5py.File(reference, "r") as b:
        keys: list[str] = []
        a.visititems(lambda k, o: keys.append(k) if isinstance(o, h5py.Dataset) else None)
        ref_keys: list[str] = []
        b.visititems(lambda k, o: ref_keys.append(k) if isinstance(o, h5py.Dataset) else None)
        assert sorted(keys) == sorted(ref_keys)
        for k in keys:
            x, y = a[k], b[k]
            assert x.shape == y.shape and x.dtype == y.dtype, k
            if h5py.check_string_dtype(x.dtype):
                assert x.asstr()[...].tolist() == y.asstr()[...].tolist(), k
            else:
                np.testing.assert_array_equal(x[...], y[...], err_msg=k)
        assert a["labels/emotion"].attrs["kind"] == "categorical"
        assert list(a["labels/emotion"].attrs["class_names"]) == ["neutral", "happy", "sad"]
        assert a["labels/valence"].attrs["kind"] == "float" and a["labels/multi"].attrs["kind"] == "multilabel"
        assert a.attrs["complete"] and a.attrs["library_version"] == contrastive_mer.__version__


@pytest.mark.parametrize("part_rows,batch,compression,seq_dtype", [
    (1, 1, None, "float32"), (7, 5, None, "float16"), (256, 64, "lzf", "float32"), (10_000, 300, None, "float32")])
def test_the_writer_writes_what_a_naive_writer_writes(tmp_path: Path, part_rows: int, batch: int,
                                                      compression: str | None, seq_dtype: str) -> None:
    """Every dataset equal to the plain whole-array write, whatever the record and batch sizes (1 row per
    record up to one record for all), also across the whole-chunk boundaries (9000 rows > 8192-row chunks)."""
    n = 9000 if part_rows >= 256 else 60
    rows = make_rows(n, seed=part_rows)
    rows["valence"][::7] = np.nan  # missing float labels
    rows["emotion"][::5] = -1  # missing categorical labels
    out = tmp_path / "fast.h5"
    w = FeatureStoreWriter(out, **writer_kwargs(part_rows=part_rows, compression=compression,
                                                sequence_dtype=seq_dtype))
    for s in range(0, n, batch):
        append_rows(w, rows, np.arange(s, min(n, s + batch)))
    w.finish()
    naive_store(tmp_path / "naive.h5", rows, seq_dtype)
    assert_same_content(out, tmp_path / "naive.h5")
    with h5py.File(out, "r") as f:
        assert f["features/audio"].compression == compression and f["features/audio"].fletcher32
    with FeatureStore(out) as s:  # and the reader's checks accept it
        assert s.ids.tolist() == rows["ids"] and s.sequence("audio", n - 1).shape == rows["seq"][-1].shape


def test_a_log_cut_at_any_byte_resumes_to_the_same_store(tmp_path: Path) -> None:
    """A crash can leave the log ending anywhere inside a record: resuming keeps exactly the complete records,
    cuts the rest off, and the finished store equals an uninterrupted run's (half a record is never taken)."""
    rows = make_rows(30)
    reference = tmp_path / "ref.h5"
    w = FeatureStoreWriter(reference, **writer_kwargs(part_rows=4))
    append_rows(w, rows, np.arange(30))
    w.finish()
    src = tmp_path / "src.h5"
    w = FeatureStoreWriter(src, **writer_kwargs(part_rows=4))
    for s in range(0, 30, 4):
        append_rows(w, rows, np.arange(s, min(30, s + 4)))
    w.flush()
    w.close()  # killed before finish(): the folder holds every row
    log = tmp_path / "src.h5.parts" / rowlog.LOG_NAME
    data = log.read_bytes()
    ends = [end for _, end in rowlog.scan(log, w.schema)]
    assert len(ends) == 8 and ends[-1] == len(data)
    cuts = sorted({0, 1, 23, 24, 25, len(data) - 1} | {e + d for e in ends[:-1] for d in (-1, 0, 1)}
                  | set(np.random.default_rng(0).integers(0, len(data), 6).tolist()))
    for cut in cuts:
        out = tmp_path / f"cut{cut}.h5"
        shutil.copytree(tmp_path / "src.h5.parts", tmp_path / f"cut{cut}.h5.parts")
        with open(tmp_path / f"cut{cut}.h5.parts" / rowlog.LOG_NAME, "r+b") as fh:
            fh.truncate(cut)
        kept = sum(e <= cut for e in ends)
        w = FeatureStoreWriter(out, **writer_kwargs(part_rows=4))
        done = w.done_ids()
        assert done == set(rows["ids"][:min(30, 4 * kept)]), cut
        assert (tmp_path / f"cut{cut}.h5.parts" / rowlog.LOG_NAME).stat().st_size == (ends[kept - 1] if kept else 0)
        append_rows(w, rows, np.array([i for i, x in enumerate(rows["ids"]) if x not in done]))
        assert_same_file(w.finish(), reference)


def test_a_corrupt_record_in_the_middle_ends_the_log_there(tmp_path: Path) -> None:
    """A record whose bytes changed (CRC mismatch) and everything after it are re-extracted, not trusted."""
    rows = make_rows(12)
    out = tmp_path / "c.h5"
    w = FeatureStoreWriter(out, **writer_kwargs(part_rows=4))
    for s in range(0, 12, 4):
        append_rows(w, rows, np.arange(s, s + 4))
    w.close()
    log = tmp_path / "c.h5.parts" / rowlog.LOG_NAME
    ends = [end for _, end in rowlog.scan(log, w.schema)]
    raw = bytearray(log.read_bytes())
    raw[ends[0] + 40] ^= 0xFF  # inside the second record's payload
    log.write_bytes(bytes(raw))
    w = FeatureStoreWriter(out, **writer_kwargs(part_rows=4))
    assert w.done_ids() == set(rows["ids"][:4])
    w.close()


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {repo!r})
    from tests.store.test_hdf5 import make_rows, writer_kwargs, append_rows
    from contrastive_mer.store import _layout
    from contrastive_mer.store.hdf5 import FeatureStoreWriter
    out, mode = sys.argv[1], sys.argv[2]
    rows = make_rows(3000)
    w = FeatureStoreWriter(out, **writer_kwargs(part_rows=100, fsync=True, sync_seconds=0.05))
    done = w.done_ids()
    todo = np.array([i for i, x in enumerate(rows["ids"]) if x not in done], dtype=int)
    print("resumed", len(done), flush=True)
    for s in range(0, len(todo), 50):
        append_rows(w, rows, todo[s:s + 50])
        print("appended", flush=True)
    if mode == "slow-merge":
        original = _layout._append
        def slow(ds, arr):
            original(ds, arr)
            ds.file.flush()
            print("merging", flush=True)
            time.sleep(0.2)
        _layout._append = slow
    print("finishing", flush=True)
    w.finish()
    print("finished", flush=True)
""")


def _run_until(script: Path, out: Path, mode: str, marker: str, count: int) -> tuple[int, list[str]]:
    proc = subprocess.Popen([sys.executable, str(script), str(out), mode], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seen: list[str] = []
    while sum(s == marker for s in seen) < count:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, f"child ended early: {seen[-3:]} {proc.stderr.read() if proc.stderr else ''}"
        seen.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return int(seen[0].split()[1]), seen


def test_sigkill_mid_extraction_and_mid_merge_resumes_to_the_same_store(tmp_path: Path) -> None:
    """A real process appending without pause is killed (most likely inside a write), resumed and killed
    again in the middle of the final merge; the third run finishes the store an uninterrupted run writes."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    out = tmp_path / "k.h5"
    first, _ = _run_until(script, out, "fast", "appended", 9)
    assert first == 0 and not out.exists()
    with FeatureStore(out, allow_partial=True) as partial:  # a reader sees whole records only
        n1 = len(partial)
        assert 400 <= n1 < 3000 and partial.ids.tolist() == make_rows(3000)["ids"][:n1]
    second, _ = _run_until(script, out, "slow-merge", "merging", 2)
    assert second == n1
    assert not out.exists() and (tmp_path / "k.h5.tmp").exists()  # the half-written merge is not the store
    final = subprocess.run([sys.executable, str(script), str(out), "fast"], cwd=REPO, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert final.returncode == 0 and final.stdout.split()[:2] == ["resumed", "3000"], final.stderr[-2000:]
    assert not (tmp_path / "k.h5.tmp").exists() and not (tmp_path / "k.h5.parts").exists()
    reference = tmp_path / "ref.h5"
    w = FeatureStoreWriter(reference, **writer_kwargs(part_rows=512))
    append_rows(w, make_rows(3000), np.arange(3000))
    assert_same_file(out, w.finish())


def test_fsync_runs_at_most_once_per_sync_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync=True: the log is synced when sync_seconds have passed (0 = at every flush), not per record; the
    finished file is fsynced once before it replaces anything."""
    calls: list[str] = []
    monkeypatch.setattr(rowlog.os, "fdatasync", lambda fd: calls.append("log"))
    rows = make_rows(40)
    for seconds, expected in ((0.0, 40), (3600.0, 0)):
        calls.clear()
        w = FeatureStoreWriter(tmp_path / f"s{seconds}.h5", **writer_kwargs(part_rows=1, fsync=True,
                                                                               sync_seconds=seconds))
        for i in range(40):
            append_rows(w, rows, np.array([i]))
        assert calls.count("log") == expected
        w.finish()
    w = FeatureStoreWriter(tmp_path / "t.h5", **writer_kwargs(part_rows=1, fsync=True, sync_seconds=0.2))
    start = time.monotonic()
    calls.clear()
    for i in range(40):
        append_rows(w, rows, np.array([i]))
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    assert 1 <= calls.count("log") <= elapsed / 0.2 + 1
    w.close()


def test_a_nul_in_an_id_or_group_is_refused_at_append(tmp_path: Path) -> None:
    """HDF5 strings end at NUL: such an id is refused when appended, naming it, and the writer goes on."""
    rows = make_rows(6)
    w = FeatureStoreWriter(tmp_path / "n.h5", **writer_kwargs(part_rows=4))
    append_rows(w, rows, np.arange(3))
    bad = dict(rows, ids=["a\0b"] + rows["ids"][1:])
    with pytest.raises(ValueError, match="NUL"):
        append_rows(w, bad, np.arange(1))
    bad = dict(rows, speaker=["x\0"] * 6)
    with pytest.raises(ValueError, match="groups/speaker.*NUL"):
        append_rows(w, bad, np.arange(3, 4))
    append_rows(w, rows, np.arange(3, 6))
    with FeatureStore(w.finish()) as s:
        assert s.ids.tolist() == rows["ids"]


def test_a_finished_marker_without_its_merged_file_merges_again(tmp_path: Path) -> None:
    """FINISHED says the merge was complete, but neither the temp file nor the store survived (a power loss):
    the rows are kept and merged again, never deleted."""
    rows = make_rows(8)
    out = tmp_path / "f.h5"
    w = FeatureStoreWriter(out, **writer_kwargs(part_rows=4))
    append_rows(w, rows, np.arange(8))
    w.close()
    (tmp_path / "f.h5.parts" / "FINISHED").write_text("merged\n")
    w = FeatureStoreWriter(out, **writer_kwargs(part_rows=4))
    assert w.done_ids() == set(rows["ids"])
    with FeatureStore(w.finish()) as s:
        assert s.ids.tolist() == rows["ids"]
