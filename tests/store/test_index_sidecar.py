"""FAISS sidecar integrity (issue 13 item 6): digests of ids, index file and sidecar checked on load; NaN/inf
refused at indexing with a count; bad index settings and query files are one-line errors (exit 2)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from contrastive_mer.store.index import EmbeddingIndex, sidecar_path
from tests.conftest import cli_error
from tests.store.test_index import make_store
from tests.store.test_metadata_integrity import reseal


def cmer(*argv: str) -> int:
    from contrastive_mer.cli.main import main
    return main(list(argv))


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A store (40 rows, two modalities) and a flat ip index of its projections/audio."""
    data = make_store(tmp_path / "f.h5")
    idx = tmp_path / "f.faiss"
    assert cmer("index", "--features", str(tmp_path / "f.h5"), "--modality", "projections/audio", "--out", str(idx),
                "--gpu", "no") == 0
    return tmp_path / "f.h5", idx, data


def retrieve_error(store: Path, idx: Path, *query: str) -> str:
    return cli_error("retrieve", "--features", str(store), "--index", str(idx), *(query or ("--query", "s01")))


def rewrite(idx: Path, **changes: object) -> dict:
    """Change sidecar fields, keeping it valid JSON (digests untouched: what a careless edit does)."""
    meta = json.loads(sidecar_path(idx).read_text())
    meta.update(changes)
    sidecar_path(idx).write_text(json.dumps(meta))
    return meta


def test_sidecar_records_digests(built: tuple[Path, Path, dict]) -> None:
    _, idx, _ = built
    meta = json.loads(sidecar_path(idx).read_text())
    assert meta["sidecar_version"] == 2
    assert meta["ids_sha256"] == hashlib.sha256("\n".join(meta["ids"]).encode()).hexdigest()
    assert meta["index_sha256"] == hashlib.sha256(idx.read_bytes()).hexdigest()
    assert meta["index_bytes"] == idx.stat().st_size
    body = {k: v for k, v in meta.items() if k != "sidecar_sha256"}
    assert meta["sidecar_sha256"] == hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                                                    .encode()).hexdigest()
    assert not list(idx.parent.glob(".*.tmp"))  # written by temp + rename


def test_shuffled_or_renamed_ids_are_refused(built: tuple[Path, Path, dict]) -> None:
    store, idx, _ = built
    ids = json.loads(sidecar_path(idx).read_text())["ids"]
    original = sidecar_path(idx).read_text()
    for changed in (ids[1:] + ids[:1], [ids[0] + "x"] + ids[1:], list(reversed(ids))):
        rewrite(idx, ids=changed)
        line = retrieve_error(store, idx)
        assert "f.faiss.json lists ids that are not the ones the index was built with" in line
        assert "rebuild it with `cmer index --features" in line
        sidecar_path(idx).write_text(original)
    assert cmer("retrieve", "--features", str(store), "--index", str(idx), "--query", "s01") == 0


@pytest.mark.parametrize("field,value", [("metric", "l2"), ("kind", "hnsw"),
                                         ("source", {"store": "x.h5", "key": "projections/video"}),
                                         ("params", {"kind": "flat", "metric": "l2", "nlist": None, "nprobe": None,
                                                     "hnsw_m": 32, "ef_search": 64, "ef_construction": 40})])
def test_edited_metric_kind_key_or_settings_are_refused(built: tuple[Path, Path, dict], field: str,
                                                        value: object) -> None:
    store, idx, _ = built
    rewrite(idx, **{field: value})
    assert "f.faiss.json was edited or damaged after `cmer index` wrote it" in retrieve_error(store, idx)


def test_another_metric_resealed_is_caught_against_the_file(built: tuple[Path, Path, dict]) -> None:
    """Even with digests recomputed, the FAISS file's own metric and kind must be the sidecar's."""
    from contrastive_mer.store.index_sidecar import seal_sidecar
    store, idx, _ = built
    meta = json.loads(sidecar_path(idx).read_text())
    for field in ("sidecar_version", "ids_sha256", "index_sha256", "index_bytes", "sidecar_sha256"):
        meta.pop(field)
    meta["metric"] = meta["params"]["metric"] = "l2"
    sidecar_path(idx).write_text(json.dumps(seal_sidecar(meta, idx)))
    assert "does not match its sidecar: the file has metric ip (sidecar: l2)" in retrieve_error(store, idx)
    meta["metric"], meta["params"] = "ip", {**meta["params"], "metric": "ip", "kind": "ivf", "nlist": 4, "nprobe": 2}
    meta["kind"] = "ivf"
    sidecar_path(idx).write_text(json.dumps(seal_sidecar(meta, idx)))  # kind=ivf over a flat file
    assert "the file has kind flat (sidecar: ivf)" in retrieve_error(store, idx)


def test_swapped_truncated_or_damaged_index_file_is_refused(built: tuple[Path, Path, dict], tmp_path: Path) -> None:
    store, idx, _ = built
    other = tmp_path / "g.faiss"  # the same vectors under another metric: same size, other bytes
    assert cmer("index", "--features", str(store), "--modality", "projections/audio", "--metric", "l2",
                "--out", str(other), "--gpu", "no") == 0
    good = idx.read_bytes()
    shutil.copyfile(other, idx)
    assert "f.faiss is not the index file its sidecar describes (SHA-256 differs" in retrieve_error(store, idx)
    idx.write_bytes(good[:-7])
    assert f"holds {len(good) - 7} bytes but its sidecar records {len(good)}" in retrieve_error(store, idx)
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    idx.write_bytes(bytes(damaged))
    assert "SHA-256 differs" in retrieve_error(store, idx)
    idx.write_bytes(good)
    assert cmer("retrieve", "--features", str(store), "--index", str(idx), "--query", "s01") == 0


def test_missing_old_or_hostile_sidecar_is_one_line(built: tuple[Path, Path, dict]) -> None:
    store, idx, _ = built
    side = sidecar_path(idx)
    for text in ("", "[1, 2]", "{", "[" * 100000 + "]" * 100000, '{"sidecar_version": 2}', "\xff\xfe"):
        side.write_text(text, encoding="latin-1")
        assert "f.faiss.json" in retrieve_error(store, idx)
    side.unlink()
    assert "f.faiss.json does not exist" in retrieve_error(store, idx)


def nan_store(path: Path, bad_rows: dict[int, float]) -> list[str]:
    make_store(path)
    with h5py.File(path, "r+") as f:
        for key in ("fused/mean", "projections/audio"):
            for row, value in bad_rows.items():
                f[key][row, 1] = value
        reseal(f)  # a store written with these values (the digests check for changed bytes, not for NaN)
        return [i.decode() for i in f["ids"][...]]


def test_nan_or_inf_is_refused_at_indexing_with_a_count(tmp_path: Path) -> None:
    """Present rows holding NaN/inf: refused with their count and ids (they used to be dropped silently)."""
    ids = nan_store(tmp_path / "n.h5", {1: np.nan, 3: np.inf, 7: -np.inf})
    out = tmp_path / "n.faiss"
    for key in ("fused/mean", "projections/audio"):
        line = cli_error("index", "--features", str(tmp_path / "n.h5"), "--modality", key, "--out", str(out),
                         "--gpu", "no")
        assert f"3 of {36 if key == 'fused/mean' else 32} present rows of {key}" in line and "NaN or inf" in line
        assert all(repr(ids[r]) in line for r in (1, 3, 7))
    assert not out.exists()
    with pytest.raises(ValueError, match=r"2 of 4 vectors hold NaN or inf \(ids 'b', 'd'\)"):
        EmbeddingIndex.build(np.array([[1, 0], [np.nan, 1], [0, 1], [np.inf, 0]]), list("abcd"), use_gpu=False)


def test_nan_in_an_absent_row_is_not_an_error(tmp_path: Path) -> None:
    """Row 0 has no audio (make_store: every 5th row): its projection is not indexed, whatever it holds."""
    nan_store(tmp_path / "n.h5", {0: np.nan})
    assert cmer("index", "--features", str(tmp_path / "n.h5"), "--modality", "projections/audio", "--out",
                str(tmp_path / "n.faiss"), "--gpu", "no") == 0
    assert "s00" not in EmbeddingIndex.load(tmp_path / "n.faiss", use_gpu=False).ids


@pytest.mark.parametrize("argv,message", [
    (["--kind", "flat", "--nprobe", "4"], "nprobe applies to an ivf index only"),
    (["--kind", "ivf", "--nprobe", "-3"], "nprobe must be a whole number >= 1, got -3"),
    (["--kind", "ivf", "--nprobe", "0"], "nprobe must be a whole number >= 1, got 0"),
    (["--kind", "ivf", "--nlist", "0"], "nlist must be a whole number >= 1, got 0"),
    (["--kind", "ivf", "--nlist", "2", "--nprobe", "5"], "nprobe=5 exceeds nlist=2"),
    (["--kind", "hnsw", "--hnsw-m", "0"], "hnsw_m must be a whole number >= 1"),
    (["--kind", "hnsw", "--ef-search", "-1"], "ef_search must be a whole number >= 1"),
])
def test_bad_index_settings_are_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    make_store(tmp_path / "f.h5")
    line = cli_error("index", "--features", str(tmp_path / "f.h5"), "--out", str(tmp_path / "x.faiss"), "--gpu",
                     "no", *argv)
    assert message in line


def test_bad_k_is_one_line(built: tuple[Path, Path, dict]) -> None:
    store, idx, _ = built
    for k in ("0", "-2"):
        assert f"--k must be >= 1, got {k}" in retrieve_error(store, idx, "--query", "s01", "--k", k)
    with pytest.raises(ValueError, match="k must be >= 1"):
        EmbeddingIndex.load(idx, use_gpu=False).search(np.ones(4), 0)


def test_vector_file_is_read_bounded_and_checked(built: tuple[Path, Path, dict], tmp_path: Path) -> None:
    store, idx, data = built
    v = tmp_path / "v.npy"
    np.save(v, data["projections"]["audio"][:3].astype(np.float64))
    assert cmer("retrieve", "--features", str(store), "--index", str(idx), "--vector-file", str(v)) == 0
    cases = {
        b"": "empty file",
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (9999999999, 4), }"
             + b" " * 50 + b"\n": "over the limit",
    }
    for raw, message in cases.items():
        v.write_bytes(raw)
        assert message in retrieve_error(store, idx, "--vector-file", str(v))
    for array, message in [(np.array([{"a": 1}], dtype=object), "Python objects"),
                           (np.ones((2, 4), complex), "real numbers"), (np.ones((2, 5)), "dim 4"),
                           (np.ones((1, 2, 4)), "dim 4"), (np.ones((0, 4)), "dim 4"),
                           (np.array([[1, 2, 3, np.nan], [1, 1, 1, 1], [1e39, 0, 0, 0]]),
                            "2 of 3 query vectors hold NaN or inf (rows 0, 2)")]:
        np.save(v, array, allow_pickle=True)
        assert message in retrieve_error(store, idx, "--vector-file", str(v))
    v.unlink()
    v.mkdir()
    assert "a folder, expected a regular file" in retrieve_error(store, idx, "--vector-file", str(v))


def test_drop_nonfinite_leaves_them_out_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ids = nan_store(tmp_path / "n.h5", {1: np.nan, 3: np.inf})
    assert cmer("index", "--features", str(tmp_path / "n.h5"), "--modality", "fused/mean", "--out",
                str(tmp_path / "n.faiss"), "--gpu", "no", "--drop-nonfinite") == 0
    assert "left out 2 row(s) holding NaN or inf" in capsys.readouterr().out
    index = EmbeddingIndex.load(tmp_path / "n.faiss", use_gpu=False)
    assert index.source["dropped_nonfinite"] == 2 and ids[1] not in index.ids and ids[3] not in index.ids
    assert len(index) == 36 - 2  # rows with any modality present (make_store), less the two
