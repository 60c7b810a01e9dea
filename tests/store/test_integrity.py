"""A feature store is not trusted: changed bytes, crafted shapes and foreign dtypes are one-line errors (exit 2 from
the CLI) raised before anything large is allocated; a disk that fills during the final merge keeps the rows."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from contrastive_mer.errors import UserError
from contrastive_mer.store._layout import META_ATTR, metadata_digest
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from contrastive_mer.store.integrity import StoreIntegrityError
from tests.store.test_hdf5 import append_rows, assert_same_file, make_rows, write_store, writer_kwargs

REPO = Path(__file__).resolve().parents[2]


def read_everything(path: Path) -> None:
    """Every dataset through the public reader (what probes, index and retrieval do)."""
    with FeatureStore(path) as s:
        for m in s.modalities:
            s.features(m), s.projections(m), s.present(m)
            if s.has_sequences(m):
                for i in range(len(s)):
                    s.sequence(m, i)
        for name in s.label_names():
            s.labels(name)
        for name in s.group_names():
            s.groups(name)
        for mode in s.fused_modes():
            s.fused(mode)


def cli_one_line(*argv: str) -> str:
    """``cmer ARGV`` in-process: exit status 2 and exactly one line on stderr; returns that line."""
    import contextlib
    import io

    from contrastive_mer.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(argv))
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, err.getvalue()
    return lines[0]


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "good.h5", make_rows(300), batch=64)


# ------------------------------------------------------------------------------------- changed bytes
@pytest.mark.parametrize("key", ["features/audio", "projections/video", "fused/concat", "labels/emotion",
                                 "present/video", "sequences/audio", "sequences/audio_offsets"])
def test_changed_bytes_inside_a_dataset_are_an_error_naming_file_and_dataset(store: Path, key: str) -> None:
    """Random bytes written over a chunk of a finished store: reading that dataset fails with one line naming the
    file and the dataset (before: the changed values were returned, exit 0)."""
    with h5py.File(store, "r") as f:
        info = f[key].id.get_chunk_info(0)
        offset, size = int(info.byte_offset), int(info.size)
        before = f[key][...]
    rng = np.random.default_rng(1)
    with open(store, "r+b") as fh:
        fh.seek(offset + size // 3)
        fh.write(rng.bytes(max(1, min(64, size // 3))))
    with pytest.raises(StoreIntegrityError) as err:
        read_everything(store)
    msg = str(err.value)
    assert str(store) in msg and key in msg and "\n" not in msg and "checksum" in msg
    assert isinstance(err.value, UserError)
    assert before.shape[0] > 0


def test_four_kilobytes_of_random_bytes_anywhere_in_the_data_never_go_unnoticed(tmp_path: Path) -> None:
    """4 KB of random bytes at several places inside the data of a finished store (chunks of numbers and the heap
    holding the id strings): every time, opening or reading it is a StoreIntegrityError."""
    rows = make_rows(2000)
    ref = write_store(tmp_path / "ref.h5", rows, batch=500)
    with h5py.File(ref, "r") as f:
        spans = []
        for key in ("features/audio", "fused/concat", "projections/audio", "sequences/audio"):
            info = f[key].id.get_chunk_info(0)
            spans.append((int(info.byte_offset), int(info.size)))
    raw = ref.read_bytes()
    heap = raw.find("clip-000".encode())  # the ids' UTF-8 bytes, kept outside the chunks
    assert heap > 0
    spans.append((heap, 4096))
    rng = np.random.default_rng(0)
    for k, (start, size) in enumerate(spans):
        bad = tmp_path / f"bad{k}.h5"
        shutil.copy(ref, bad)
        data = bytearray(raw)
        n = min(4096, size)
        data[start:start + n] = rng.bytes(n)
        bad.write_bytes(bytes(data))
        with pytest.raises(StoreIntegrityError, match=str(bad)):
            read_everything(bad)
    read_everything(ref)  # the untouched store reads


def test_a_corrupt_store_is_one_line_from_the_cli(store: Path, tmp_path: Path) -> None:
    with h5py.File(store, "r") as f:
        info = f["features/audio"].id.get_chunk_info(0)
    with open(store, "r+b") as fh:
        fh.seek(int(info.byte_offset) + 8)
        fh.write(b"\xff" * 32)
    line = cli_one_line("index", "--features", str(store), "--modality", "audio", "--out", str(tmp_path / "i.faiss"))
    assert line.startswith("cmer index: error: ") and str(store) in line and "features/audio" in line


# ------------------------------------------------------------------------------------- crafted layouts
def _replace(path: Path, key: str, **create) -> None:
    """Replace a dataset and recompute the metadata digest (a crafter who reseals the file: the deeper checks
    must still hold)."""
    with h5py.File(path, "r+") as f:
        del f[key]
        f.create_dataset(key, **create)
        f.attrs[META_ATTR] = metadata_digest(f)


def test_a_crafted_huge_shape_is_refused_quickly_without_allocating(store: Path, tmp_path: Path) -> None:
    """A 5 MB store declaring (960, 2e6) float32 (7.7 GB): refused at open, in under 5 s, with under 100 MB of
    peak memory above what reading a good store takes (before: `cmer index` took over 3 GB)."""
    crafted = tmp_path / "crafted.h5"
    shutil.copy(store, crafted)
    with h5py.File(crafted, "r+") as f:
        n = 960
        for key in list(f.keys()):
            del f[key]
        f.create_dataset("ids", data=np.array([f"c{i}" for i in range(n)], dtype=h5py.string_dtype()))
        ds = f.create_dataset("features/audio", shape=(n, 2_000_000), dtype=np.float32, chunks=(1, 1 << 18),
                              compression="lzf")
        ds[0, :1 << 20] = np.random.default_rng(0).random(1 << 20, dtype=np.float32)  # ~4 MB of real bytes
        schema = f.attrs["schema"]  # a consistent lie: the schema declares the width too
        f.attrs["schema"] = schema.replace('"feature_dims": {"audio": 5', '"feature_dims": {"audio": 2000000')
    assert crafted.stat().st_size < 8 * 2**20
    script = textwrap.dedent(f"""
        import resource, sys, time
        from contrastive_mer.store.hdf5 import FeatureStore
        FeatureStore({str(store)!r}).features("audio")  # a good store first: the baseline peak
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            FeatureStore({str(crafted)!r}).features("audio")
            print("READ")
        except Exception as e:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(type(e).__name__, time.perf_counter() - start, rss - base)
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    first, message = out.stdout.strip().splitlines()[:2]
    name, seconds, peak_kb = first.split()
    assert name == "StoreIntegrityError", out.stdout + out.stderr
    assert float(seconds) < 5 and int(peak_kb) < 100 * 1024  # KiB above the good store's peak
    assert "features/audio" in message and "(960, 2000000)" in message and str(crafted) in message
    line = cli_one_line("index", "--features", str(crafted), "--modality", "audio", "--out", str(tmp_path / "x"))
    assert "features/audio" in line


@pytest.mark.parametrize("case", ["object", "vlen", "reference", "compound", "short rows", "wrong width",
                                  "float64", "missing"])
def test_foreign_dtypes_and_short_rows_are_one_line_errors(store: Path, tmp_path: Path, case: str) -> None:
    """Each a StoreIntegrityError at open naming file and dataset (before: tracebacks, or wrong rows)."""
    bad = tmp_path / f"{case.replace(' ', '_')}.h5"
    shutil.copy(store, bad)
    n, key = 300, "features/audio"
    with h5py.File(bad, "r+") as f:
        del f[key]
        if case == "object":
            f.create_dataset(key, data=np.array([str(i) for i in range(n)], dtype=h5py.string_dtype()))
        elif case == "vlen":
            ds = f.create_dataset(key, shape=(n,), dtype=h5py.vlen_dtype(np.float32))
            ds[0] = np.ones(3, np.float32)
        elif case == "reference":
            ds = f.create_dataset(key, shape=(n,), dtype=h5py.ref_dtype)
            ds[0] = f["ids"].ref
        elif case == "compound":
            f.create_dataset(key, data=np.zeros(n, dtype=[("a", "f4"), ("b", "i4")]))
        elif case == "short rows":
            f.create_dataset(key, data=np.zeros((n - 1, 5), np.float32))
        elif case == "wrong width":
            f.create_dataset(key, data=np.zeros((n, 7), np.float32))
        elif case == "float64":
            f.create_dataset(key, data=np.zeros((n, 5), np.float64))
    with pytest.raises(StoreIntegrityError) as err:
        FeatureStore(bad)
    msg = str(err.value)
    assert str(bad) in msg and key in msg and "\n" not in msg
    line = cli_one_line("index", "--features", str(bad), "--modality", "audio", "--out", str(tmp_path / "i"))
    assert key in line


def test_offsets_that_do_not_fit_the_frames_are_refused(store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "offsets.h5"
    shutil.copy(store, bad)
    with h5py.File(bad, "r+") as f:
        off = f["sequences/audio_offsets"][...]
        off[5] = off[-1] + 10
        del f["sequences/audio_offsets"]
        f.create_dataset("sequences/audio_offsets", data=off)
        f.attrs[META_ATTR] = metadata_digest(f)  # resealed: the offsets check itself must catch it
    with FeatureStore(bad) as s, pytest.raises(StoreIntegrityError, match="sequences/audio_offsets"):
        s.sequence("audio", 0)


def test_a_file_that_is_not_hdf5_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "random.h5"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(StoreIntegrityError, match="random.h5"):
        FeatureStore(bad)
    assert "random.h5" in cli_one_line("index", "--features", str(bad), "--out", str(tmp_path / "i"))


# ------------------------------------------------------------------------------------- disk full in the merge
FILL = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from tests.store.test_hdf5 import append_rows, make_rows, writer_kwargs
from contrastive_mer.store.hdf5 import FeatureStoreWriter
rows = make_rows(1500)
w = FeatureStoreWriter(sys.argv[1], **writer_kwargs(part_rows=256, feature_dims={{"audio": 5, "video": 400}}))
done = w.done_ids()
todo = [i for i, x in enumerate(rows["ids"]) if x not in done]
big = np.random.default_rng(0).standard_normal((1500, 400)).astype(np.float32)
rows["features"]["video"] = big
for s in range(0, len(todo), 100):
    append_rows(w, rows, np.array(todo[s:s + 100]))
print("appended", flush=True)
w.finish()
print("finished", flush=True)
"""


def _mount_tmpfs(where: Path, kib: int) -> bool:
    where.mkdir(exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_disk_full_during_the_final_merge_is_one_error_and_a_rerun_finishes(tmp_path: Path) -> None:
    """A real small tmpfs that fills while finish() writes the merged file: the process ends with one OSError
    (ENOSPC) that says the rows are kept, no segmentation fault (before: exit 139), no temp file left, the row log
    intact; with more room the same command resumes and writes the store an uninterrupted run writes."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 3500):
        pytest.skip("needs root and mount to make a small tmpfs")
    try:
        script = tmp_path / "fill.py"
        script.write_text(FILL.format(tests=str(REPO)))
        out = disk / "f.h5"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        first = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, env=env,
                               timeout=300)
        assert first.returncode == 1, (first.returncode, first.stderr[-2000:])  # not -11 (SIGSEGV)
        last = first.stderr.strip().splitlines()[-1]
        assert "No space left on device while merging" in last and "free space and rerun" in last
        assert "appended" in first.stdout and not out.exists()
        assert not out.with_name("f.h5.tmp").exists() and (disk / "f.h5.parts" / "rows.log").stat().st_size > 0
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        second = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, env=env,
                                timeout=300)
        assert second.returncode == 0 and "finished" in second.stdout, second.stderr[-2000:]
        reference = tmp_path / "ref.h5"
        rows = make_rows(1500)
        rows["features"]["video"] = np.random.default_rng(0).standard_normal((1500, 400)).astype(np.float32)
        w = FeatureStoreWriter(reference, **writer_kwargs(feature_dims={"audio": 5, "video": 400}))
        append_rows(w, rows, np.arange(1500))
        w.finish()
        assert_same_file(out, reference)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_disk_full_in_the_merge_is_one_enospc_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HDF5's write error in the merge becomes one ENOSPC OSError naming the store, which the CLI prints as one
    line (the real full disk is the tmpfs test above); the rows stay and a new writer finishes."""
    from contrastive_mer.cli.main import _environment_error
    from contrastive_mer.store import _layout

    calls = {"n": 0}
    original = _layout._append

    def full(ds, arr):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "Can't synchronously write data (file write failed: errno = 28, error message = "
                              "'No space left on device')")
        original(ds, arr)

    out = tmp_path / "s.h5"
    w = FeatureStoreWriter(out, **writer_kwargs())
    append_rows(w, make_rows(10), np.arange(10))
    monkeypatch.setattr(_layout, "_append", full)
    with pytest.raises(OSError) as err:
        w.finish()
    assert err.value.errno == 28 and "rerun" in str(err.value) and str(out) in str(err.value)
    line = _environment_error(err.value)
    assert line is not None and "\n" not in line and str(out) in line
    assert not out.exists() and not (tmp_path / "s.h5.tmp").exists()
    monkeypatch.undo()
    w2 = FeatureStoreWriter(out, **writer_kwargs())
    assert len(w2.done_ids()) == 10
    w2.finish()
    assert len(FeatureStore(out)) == 10


def test_peak_memory_reading_a_good_store_is_unchanged_by_the_checks(store: Path) -> None:
    """The checks read attributes and storage sizes, not data: opening costs well under a second here."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(20):
        FeatureStore(store).close()
    assert (time.perf_counter() - start) / 20 < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024


# ------------------------------------------------------------------------------------- shard merges
def _two_shards(folder: Path, n: int = 400) -> tuple[list[Path], dict]:
    from contrastive_mer.store.merge import shard_store_path

    rows = make_rows(n)
    paths = []
    for i in range(2):
        w = FeatureStoreWriter(shard_store_path(folder / "m.h5", i, 2),
                               **writer_kwargs(attrs={"shard_index": i, "num_shards": 2}))
        append_rows(w, rows, np.arange(i, n, 2))
        paths.append(w.finish())
    return paths, rows


def test_a_corrupt_shard_is_named_by_the_merge(tmp_path: Path) -> None:
    """Changed bytes in one shard: merge_shards fails with a StoreIntegrityError naming that shard and dataset
    (before: HDF5's traceback, or nothing when the bytes were inside the data), and writes nothing."""
    from contrastive_mer.store.merge import merge_shards

    paths, _ = _two_shards(tmp_path)
    with h5py.File(paths[1], "r") as f:
        info = f["fused/concat"].id.get_chunk_info(0)
    with open(paths[1], "r+b") as fh:
        fh.seek(int(info.byte_offset) + 16)
        fh.write(b"\x00\x01" * 16)
    with pytest.raises(StoreIntegrityError) as err:
        merge_shards(paths, tmp_path / "m.h5")
    assert str(paths[1]) in str(err.value) and "fused/concat" in str(err.value)
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "m.h5.tmp").exists()


def test_disk_full_during_a_shard_merge_is_one_error(tmp_path: Path) -> None:
    """A tmpfs that fills while merge_shards writes: one ENOSPC error in a process that exits normally (no
    segmentation fault), no temp file; with room the merge completes."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 300):
        pytest.skip("needs root and mount to make a small tmpfs")
    try:
        paths, rows = _two_shards(tmp_path, n=3000)
        script = ("import sys\nfrom contrastive_mer.store.merge import merge_shards\n"
                  f"merge_shards({[str(p) for p in paths]!r}, sys.argv[1])\nprint('merged')\n")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = disk / "m.h5"
        first = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env,
                               timeout=300)
        assert first.returncode == 1, (first.returncode, first.stderr[-2000:])
        assert "No space left on device while merging 2 shards" in first.stderr.strip().splitlines()[-1]
        assert not out.exists() and not (disk / "m.h5.tmp").exists()
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        second = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env,
                                timeout=300)
        assert second.returncode == 0, second.stderr[-2000:]
        with FeatureStore(out) as s:
            assert s.ids.tolist() == sorted(rows["ids"])
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_the_merge_opens_shards_through_the_stores_one_opener(tmp_path: Path, monkeypatch) -> None:
    """Every shard the merge reads is opened by FeatureStore's opener (one code path for finished stores), so
    a shard whose layout does not fit its schema is refused up front, before any output (before: the merge
    opened shards with h5py itself and checked only the complete flag)."""
    from contrastive_mer.store import merge
    from contrastive_mer.store.merge import merge_shards

    paths, _ = _two_shards(tmp_path, n=40)
    opened: list[Path] = []
    real = FeatureStore.open_file

    def spy(path, rdcc_nbytes=None):
        opened.append(Path(path))
        return real(path, rdcc_nbytes=rdcc_nbytes)

    monkeypatch.setattr(merge.FeatureStore, "open_file", staticmethod(spy))
    merge_shards(paths, tmp_path / "m.h5")
    assert set(opened) == set(paths)
    monkeypatch.undo()
    assert not any("h5py.File(p" in line or 'h5py.File(path, "r"' in line
                   for line in Path(merge.__file__).read_text().splitlines())
    _replace(paths[1], "present/video", data=np.ones(3, dtype=bool))  # 3 rows where the shard holds 20
    with pytest.raises(StoreIntegrityError, match=r"m\.shard-1-of-2\.h5.*present/video"):
        merge_shards(paths, tmp_path / "m2.h5")
    assert not (tmp_path / "m2.h5").exists() and not (tmp_path / "m2.h5.tmp").exists()
