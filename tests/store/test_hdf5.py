"""HDF5 feature store: round trip, crash/resume, incomplete files, duplicates, incompatible resumes."""

from __future__ import annotations

import os
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
from contrastive_mer.store import hdf5 as store_mod
from contrastive_mer.store._layout import SHA_ATTR
from contrastive_mer.store.hdf5 import (
    FeatureStore,
    FeatureStoreWriter,
    IncompleteStoreError,
    LabelSpec,
    StoreMismatchError,
)

REPO = Path(__file__).resolve().parents[2]
MODS = ["audio", "video"]
DIMS = {"audio": 5, "video": 3}
P = 4


def make_rows(n: int, seed: int = 0) -> dict:
    """Deterministic rows for n clips (video absent for every third clip, audio sequences ragged)."""
    rng = np.random.default_rng(seed)
    proj = {m: rng.normal(size=(n, P)).astype(np.float32) for m in MODS}
    for m in MODS:
        proj[m] /= np.linalg.norm(proj[m], axis=1, keepdims=True)
    lengths = rng.integers(0, 6, size=n)
    return {
        "ids": [f"clip-{i:03d}-é" for i in range(n)],  # non-ASCII on purpose (UTF-8 strings)
        "emotion": rng.integers(0, 3, size=n), "valence": rng.normal(size=n).astype(np.float32),
        "multi": (rng.random((n, 2)) > 0.5).astype(np.float32),
        "speaker": [f"spk{i % 4}" for i in range(n)],
        "features": {m: rng.normal(size=(n, DIMS[m])).astype(np.float32) for m in MODS},
        "projections": proj,
        "present": {"audio": np.ones(n, bool), "video": np.arange(n) % 3 != 0},
        "fused": {"concat": rng.normal(size=(n, 8)).astype(np.float32)},
        "seq": [rng.normal(size=(t, DIMS["audio"])).astype(np.float32) for t in lengths],
    }


def writer_kwargs(**over) -> dict:
    kw = dict(modalities=MODS, feature_dims=DIMS, projection_dim=P, fused_dims={"concat": 8},
              sequences=["audio"],
              labels={"emotion": ["neutral", "happy", "sad"], "valence": None,
                      "multi": LabelSpec(("laugh", "cry"), multi_label=True)},
              groups=["speaker"], attrs={"config": "model:\n  dim: 4\n", "checkpoint_sha256": "ab12",
                                         "epochs": 3, "extra": {"k": [1, 2]}},
              part_rows=1, fsync=False)
    kw.update(over)
    return kw


def append_rows(w: FeatureStoreWriter, rows: dict, idx: np.ndarray) -> None:
    w.append([rows["ids"][i] for i in idx],
             labels={"emotion": rows["emotion"][idx], "valence": rows["valence"][idx], "multi": rows["multi"][idx]},
             groups={"speaker": [rows["speaker"][i] for i in idx]},
             features={m: rows["features"][m][idx] for m in MODS},
             projections={m: rows["projections"][m][idx] for m in MODS},
             present={m: rows["present"][m][idx] for m in MODS},
             fused={mode: v[idx] for mode, v in rows["fused"].items()},
             sequences={"audio": [rows["seq"][i] for i in idx]})


def write_store(path: Path, rows: dict, batch: int = 4, **over) -> Path:
    w = FeatureStoreWriter(path, **writer_kwargs(**over))
    n = len(rows["ids"])
    for s in range(0, n, batch):
        append_rows(w, rows, np.arange(s, min(n, s + batch)))
    return w.finish()


def h5_contents(path: Path) -> dict:
    """Every dataset (as arrays) and every attribute except ``created`` (and ``meta_sha256``, which covers
    ``created`` besides everything compared here), for whole-file comparison."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj.asstr()[...] if obj.dtype.kind == "O" else obj[...]
            out.update({f"{name}@{k}": str(v) for k, v in obj.attrs.items()})
        f.visititems(visit)
        out.update({f"@{k}": str(v) for k, v in f.attrs.items() if k not in ("created", "meta_sha256")})
    return out


def assert_same_file(a: Path, b: Path) -> None:
    ca, cb = h5_contents(a), h5_contents(b)
    assert sorted(ca) == sorted(cb)
    for k in ca:
        if isinstance(ca[k], np.ndarray):
            np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
        else:
            assert ca[k] == cb[k], k


# ------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("part_rows", [1, 7])
def test_round_trip_every_dataset_and_attribute(tmp_path: Path, part_rows: int) -> None:
    rows = make_rows(22)
    path = write_store(tmp_path / "f.h5", rows, batch=5, part_rows=part_rows)
    assert not (tmp_path / "f.h5.parts").exists() and not (tmp_path / "f.h5.tmp").exists()
    with FeatureStore(path) as s:
        assert len(s) == 22 and s.ids.tolist() == rows["ids"]
        assert s.modalities == MODS
        a = s.attrs
        assert a["complete"] is True and a["format_version"] == 1
        assert a["library_version"] == contrastive_mer.__version__
        assert a["config"] == "model:\n  dim: 4\n" and a["checkpoint_sha256"] == "ab12" and a["epochs"] == 3
        assert a["extra"] == {"k": [1, 2]} and a["modalities"] == MODS
        assert a["created"].endswith("+00:00")
        assert sorted(s.label_names()) == ["emotion", "multi", "valence"]
        np.testing.assert_array_equal(s.labels("emotion"), rows["emotion"])
        assert s.labels("emotion").dtype == np.int64
        assert s.class_names("emotion") == ["neutral", "happy", "sad"]
        np.testing.assert_array_equal(s.labels("valence"), rows["valence"])
        assert s.labels("valence").dtype == np.float32 and s.class_names("valence") is None
        np.testing.assert_array_equal(s.labels("multi"), rows["multi"])
        assert s.labels("multi").shape == (22, 2) and s.class_names("multi") == ["laugh", "cry"]
        assert s.group_names() == ["speaker"] and s.groups("speaker").tolist() == rows["speaker"]
        for m in MODS:
            np.testing.assert_array_equal(s.features(m), rows["features"][m])
            np.testing.assert_array_equal(s.projections(m), rows["projections"][m])
            np.testing.assert_array_equal(s.present(m), rows["present"][m])
            assert s.present(m).dtype == bool
        assert s.fused_modes() == ["concat"]
        np.testing.assert_array_equal(s.fused("concat"), rows["fused"]["concat"])
        assert s.has_sequences("audio") and not s.has_sequences("video")
        for i in range(22):
            np.testing.assert_array_equal(s.sequence("audio", i), rows["seq"][i])
        with pytest.raises(KeyError, match="features/text.*f.h5.*audio"):
            s.features("text")
        with pytest.raises(KeyError, match="nope"):
            s.labels("nope")
    with h5py.File(path, "r") as f:
        offsets = f["sequences/audio_offsets"][...]
        np.testing.assert_array_equal(offsets, np.concatenate([[0], np.cumsum([len(q) for q in rows["seq"]])]))
        assert offsets.dtype == np.int64
        for key in ("ids", "features/audio", "projections/video", "present/audio", "fused/concat",
                    "sequences/audio", "labels/emotion", "groups/speaker"):
            assert f[key].chunks is not None and f[key].compression is None, key  # lzf only when asked for
            is_str = key in ("ids", "groups/speaker")
            assert f[key].fletcher32 is not is_str and (SHA_ATTR in f[key].attrs) is is_str, key
        assert h5py.check_string_dtype(f["ids"].dtype).encoding == "utf-8"
        for v in f.attrs.values():  # plain values only, nothing pickled
            assert isinstance(v, (str, bool, np.bool_, np.integer, np.floating, int, float))


def test_float16_sequences_and_no_projections(tmp_path: Path) -> None:
    rows = make_rows(6)
    w = FeatureStoreWriter(tmp_path / "h.h5", modalities=["audio"], feature_dims={"audio": 5}, projection_dim=None,
                           sequences={"audio": 5}, sequence_dtype="float16", fsync=False)
    seq = np.concatenate(rows["seq"])
    w.append(rows["ids"], {}, {}, {"audio": rows["features"]["audio"]}, projections={},
             present={"audio": np.ones(6, bool)}, fused={},
             sequences={"audio": (seq, np.array([len(q) for q in rows["seq"]]))})
    with FeatureStore(w.finish()) as s:
        assert s.fused_modes() == []
        with pytest.raises(KeyError):
            s.projections("audio")
        assert s.sequence("audio", 2).dtype == np.float16
        np.testing.assert_allclose(s.sequence("audio", 2), rows["seq"][2], rtol=1e-3, atol=1e-3)


def test_empty_store(tmp_path: Path) -> None:
    w = FeatureStoreWriter(tmp_path / "e.h5", **writer_kwargs())
    with FeatureStore(w.finish()) as s:
        assert len(s) == 0 and s.features("audio").shape == (0, 5)


# ------------------------------------------------------------------------------------------- bad input
def test_duplicate_ids_rejected(tmp_path: Path) -> None:
    rows = make_rows(8)
    w = FeatureStoreWriter(tmp_path / "d.h5", **writer_kwargs(part_rows=3))
    append_rows(w, rows, np.arange(0, 2))
    with pytest.raises(ValueError, match="duplicate id 'clip-001-é'"):
        append_rows(w, rows, np.array([2, 1]))  # 1 is buffered, not yet in a part file
    with pytest.raises(ValueError, match="duplicate id 'clip-003-é'"):
        append_rows(w, rows, np.array([3, 3]))
    append_rows(w, rows, np.arange(2, 4))  # flushes (4 rows >= 3)
    with pytest.raises(ValueError, match="duplicate id 'clip-000-é'"):
        append_rows(w, rows, np.array([0]))
    w2 = FeatureStoreWriter(tmp_path / "d.h5", **writer_kwargs(part_rows=3))  # resumed writer knows them too
    assert w2.done_ids() == set(rows["ids"][:4])
    with pytest.raises(ValueError, match="duplicate id 'clip-002-é'"):
        append_rows(w2, rows, np.array([2]))


def test_bad_batches_name_the_key(tmp_path: Path) -> None:
    rows = make_rows(4)
    w = FeatureStoreWriter(tmp_path / "b.h5", **writer_kwargs())
    rows["features"]["audio"] = rows["features"]["audio"][:, :4]
    with pytest.raises(ValueError, match="features/audio has shape"):
        append_rows(w, rows, np.arange(4))
    rows = make_rows(4)
    rows["seq"][1] = np.zeros((2, 7))
    with pytest.raises(ValueError, match="sequences/audio of 'clip-001-é'"):
        append_rows(w, rows, np.arange(4))
    with pytest.raises(ValueError, match="unknown fused keys"):
        w.append(["x"], {}, {}, {}, projections={}, present={}, fused={"mean": np.zeros((1, 4))})
    assert w.done_ids() == set()
    with pytest.raises(ValueError, match="set by the writer"):
        FeatureStoreWriter(tmp_path / "c.h5", **writer_kwargs(attrs={"complete": True}))


def test_incompatible_resume_raises(tmp_path: Path) -> None:
    rows = make_rows(6)
    w = FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs())
    append_rows(w, rows, np.arange(3))
    with pytest.raises(StoreMismatchError, match="feature_dims"):
        FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs(feature_dims={"audio": 5, "video": 4}))
    with pytest.raises(StoreMismatchError, match="attrs.config"):
        FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs(attrs={"config": "other", "checkpoint_sha256": "ab12",
                                                                     "epochs": 3, "extra": {"k": [1, 2]}}))
    with pytest.raises(StoreMismatchError, match="modalities"):
        FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs(modalities=["audio"]))
    # a finished store is checked too
    w = FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs())
    append_rows(w, rows, np.arange(3, 6))
    w.finish()
    with pytest.raises(StoreMismatchError, match="projection_dim"):
        FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs(projection_dim=8))
    again = FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs())
    assert again.done_ids() == set(rows["ids"])
    with pytest.raises(RuntimeError, match="already complete"):
        append_rows(again, make_rows(7), np.array([6]))
    assert again.finish() == tmp_path / "r.h5"
    fresh = FeatureStoreWriter(tmp_path / "r.h5", **writer_kwargs(projection_dim=8, overwrite=True))
    assert fresh.done_ids() == set() and not (tmp_path / "r.h5").exists()


# ------------------------------------------------------------------------------------------- incomplete
def test_incomplete_file_refused_unless_partial(tmp_path: Path) -> None:
    rows = make_rows(10)
    path = write_store(tmp_path / "i.h5", rows)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(IncompleteStoreError, match="i.h5.*allow_partial=True"):
        FeatureStore(path)
    with FeatureStore(path, allow_partial=True) as s:
        assert s.ids.tolist() == rows["ids"] and s.attrs["complete"] is False
    with h5py.File(path, "a") as f:
        del f.attrs["complete"]
    with pytest.raises(IncompleteStoreError):
        FeatureStore(path)


def test_unfinished_parts_folder_readable_as_partial(tmp_path: Path) -> None:
    rows = make_rows(10)
    w = FeatureStoreWriter(tmp_path / "p.h5", **writer_kwargs(part_rows=4))
    append_rows(w, rows, np.arange(0, 5))
    append_rows(w, rows, np.arange(5, 7))  # buffered only: not visible
    with pytest.raises(IncompleteStoreError, match="p.h5.*allow_partial"):
        FeatureStore(tmp_path / "p.h5")
    with FeatureStore(tmp_path / "p.h5", allow_partial=True) as s:
        assert s.ids.tolist() == rows["ids"][:5] and s.attrs["complete"] is False
        np.testing.assert_array_equal(s.features("video"), rows["features"]["video"][:5])
        np.testing.assert_array_equal(s.sequence("audio", 4), rows["seq"][4])
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        FeatureStore(tmp_path / "nothing.h5")


# ------------------------------------------------------------------------------------------- crash / resume
CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from tests.store.test_hdf5 import make_rows, writer_kwargs, append_rows
    from contrastive_mer.store.hdf5 import FeatureStoreWriter
    out, batch, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rows = make_rows(40)
    w = FeatureStoreWriter(out, **writer_kwargs(fsync=True))
    done = w.done_ids()
    todo = np.array([i for i, x in enumerate(rows["ids"]) if x not in done], dtype=int)
    print("resumed", len(done), flush=True)
    for k, s in enumerate(range(0, len(todo), batch)):
        append_rows(w, rows, todo[s:s + batch])
        print("appended", k, flush=True)
        time.sleep(pause)
    w.finish()
    print("finished", flush=True)
""")


def _child(script: Path, out: Path, batch: int, pause: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(script), str(out), str(batch), str(pause)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, lines: int, delay: float) -> list[str]:
    seen = []
    while len([s for s in seen if s.startswith("appended")]) < lines:
        line = proc.stdout.readline()
        assert line, f"child ended early: {seen} {proc.stderr.read()}"
        seen.append(line.strip())
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return seen


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(REPO)))
    out = tmp_path / "k.h5"
    # 1st run: killed after 3 batches, during its pause
    _kill_after(_child(script, out, 3, 0.2), 3, 0.05)
    assert not out.exists() and (tmp_path / "k.h5.parts").is_dir()
    with FeatureStore(out, allow_partial=True) as partial:
        n1 = len(partial)
        assert 9 <= n1 < 40 and partial.ids.tolist() == make_rows(40)["ids"][:n1]
    # 2nd run: resumes with another batch size, killed right after a write (likely mid-part)
    seen = _kill_after(_child(script, out, 5, 0.0), 2, 0.003)
    assert seen[0] == f"resumed {n1}"
    assert not out.exists()
    # 3rd run: completes
    proc = _child(script, out, 7, 0.0)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    n2 = int(stdout.splitlines()[0].split()[1])
    assert n2 >= n1 + 10 and stdout.strip().endswith("finished")
    assert not (tmp_path / "k.h5.parts").exists()
    # reference: an uninterrupted run in this process
    ref = write_store(tmp_path / "ref.h5", make_rows(40), batch=6)
    with FeatureStore(out) as s:
        assert len(s) == 40 and len(set(s.ids.tolist())) == 40
    assert_same_file(out, ref)


def test_crash_during_finish_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(12)
    ref = write_store(tmp_path / "ref.h5", rows)
    # (a) dies after the merged file is marked FINISHED but before it is renamed into place
    out = tmp_path / "a.h5"
    w = FeatureStoreWriter(out, **writer_kwargs())
    append_rows(w, rows, np.arange(12))
    real_replace = os.replace

    def dying_replace(src, dst):
        if Path(dst) == out:
            raise KeyboardInterrupt("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        w.finish()
    monkeypatch.setattr(store_mod.os, "replace", real_replace)
    assert not out.exists() and (tmp_path / "a.h5.tmp").exists()
    w2 = FeatureStoreWriter(out, **writer_kwargs())
    assert w2.done_ids() == set(rows["ids"]) and not (tmp_path / "a.h5.parts").exists()
    assert w2.finish() == out
    assert_same_file(out, ref)
    # (b) dies while removing the parts folder
    out = tmp_path / "b.h5"
    w = FeatureStoreWriter(out, **writer_kwargs())
    append_rows(w, rows, np.arange(12))

    def dying_rmtree(path, *a, **k):
        (Path(path) / "rows.log").unlink()
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(store_mod.shutil, "rmtree", dying_rmtree)
    with pytest.raises(KeyboardInterrupt):
        w.finish()
    monkeypatch.undo()
    w3 = FeatureStoreWriter(out, **writer_kwargs())
    assert w3.done_ids() == set(rows["ids"]) and not (tmp_path / "b.h5.parts").exists()
    assert_same_file(w3.finish(), ref)
    # (c) a half-written part file and merge file are discarded
    out = tmp_path / "c.h5"
    w = FeatureStoreWriter(out, **writer_kwargs())
    append_rows(w, rows, np.arange(5))
    (tmp_path / "c.h5.parts" / "part-000005.h5.tmp").write_bytes(b"garbage")
    (tmp_path / "c.h5.tmp").write_bytes(b"garbage")
    w4 = FeatureStoreWriter(out, **writer_kwargs())
    assert w4.done_ids() == set(rows["ids"][:5])
    append_rows(w4, rows, np.arange(5, 12))
    assert_same_file(w4.finish(), ref)


def _legacy_part(path: Path, rows: dict, idx: np.ndarray) -> None:
    """A part file as earlier versions wrote one per flush: every dataset keyed by its final path."""
    str_dt = h5py.string_dtype("utf-8")
    data = {"ids": np.array([rows["ids"][i] for i in idx], dtype=str_dt), "labels/emotion": rows["emotion"][idx],
            "labels/valence": rows["valence"][idx], "labels/multi": rows["multi"][idx],
            "groups/speaker": np.array([rows["speaker"][i] for i in idx], dtype=str_dt),
            "fused/concat": rows["fused"]["concat"][idx],
            "sequences/audio": np.concatenate([np.zeros((0, DIMS["audio"]), np.float32)]
                                              + [rows["seq"][i] for i in idx]),
            "sequences/audio_lengths": np.array([len(rows["seq"][i]) for i in idx], dtype=np.int64)}
    for m in MODS:
        data[f"features/{m}"], data[f"projections/{m}"] = rows["features"][m][idx], rows["projections"][m][idx]
        data[f"present/{m}"] = rows["present"][m][idx]
    with h5py.File(path, "w") as f:
        for key, arr in data.items():
            f.create_dataset(key, data=arr)


@pytest.mark.parametrize("name", ["part", "shard"])
def test_resume_reads_parts_written_by_earlier_versions(tmp_path: Path, name: str) -> None:
    """HDF5 part files (``part-<n>.h5``, earlier ``shard-<n>.h5``) left by earlier versions are resumed: their
    rows come first, the new rows follow in the row log, and the store equals an uninterrupted run's."""
    rows = make_rows(12)
    ref = write_store(tmp_path / "ref.h5", rows)
    out = tmp_path / "old.h5"
    w = FeatureStoreWriter(out, **writer_kwargs())
    w.close()  # the folder and manifest, as an earlier version left them
    parts = tmp_path / "old.h5.parts"
    (parts / "rows.log").unlink()
    _legacy_part(parts / f"{name}-000000.h5", rows, np.arange(0, 3))
    _legacy_part(parts / f"{name}-000001.h5", rows, np.arange(3, 5))
    w2 = FeatureStoreWriter(out, **writer_kwargs())
    assert w2.done_ids() == set(rows["ids"][:5])
    append_rows(w2, rows, np.arange(5, 12))
    assert_same_file(w2.finish(), ref)


def test_parts_list_is_named_for_what_it_is_and_old_folders_resume(tmp_path: Path) -> None:
    """The parts folder's list is ``parts.json`` (not "manifest", the corpus table's name); a folder an earlier
    version left with ``manifest.json`` still resumes, still reads as a partial store, and finishes equal to an
    uninterrupted run."""
    from contrastive_mer.store.parts import LEGACY_PARTS_LIST_NAMES, PARTS_LIST_NAME, find_parts_list

    rows = make_rows(12)
    ref = write_store(tmp_path / "ref.h5", rows)
    out = tmp_path / "old.h5"
    w = FeatureStoreWriter(out, **writer_kwargs(part_rows=2))
    append_rows(w, rows, np.arange(0, 4))
    w.close()
    parts = tmp_path / "old.h5.parts"
    assert PARTS_LIST_NAME == "parts.json" and (parts / "parts.json").is_file()
    (parts / "parts.json").rename(parts / LEGACY_PARTS_LIST_NAMES[0])  # as an earlier version left it
    assert find_parts_list(parts) == parts / "manifest.json"
    with FeatureStore(out, allow_partial=True) as partial:
        assert partial.ids.tolist() == rows["ids"][:4]
    with pytest.raises(IncompleteStoreError, match="unfinished"):
        FeatureStore(out)
    w2 = FeatureStoreWriter(out, **writer_kwargs(part_rows=2))
    assert w2.done_ids() == set(rows["ids"][:4])
    assert not (parts / "parts.json").exists()  # the old list is kept, not written twice
    append_rows(w2, rows, np.arange(4, 12))
    assert_same_file(w2.finish(), ref)
