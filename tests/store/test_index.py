"""FAISS index: exact search against numpy brute force, approximate recall, save/load, store keys, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.cli import index as cli_index
from contrastive_mer.errors import UserError
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from contrastive_mer.store.index import EmbeddingIndex, gpu_available, index_from_store, sidecar_path
from tests.conftest import cli_error


def brute_force(x: np.ndarray, q: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Naive reference: cosine similarity (descending) or squared L2 distance (ascending)."""
    if metric == "ip":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        s = qn @ xn.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


def clustered(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_flat_topk_equals_brute_force(metric: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    q = rng.normal(size=(25, 16)).astype(np.float32)
    ids = [f"id{i}" for i in range(300)]
    index = EmbeddingIndex.build(x, ids, kind="flat", metric=metric, use_gpu=False)
    scores, got = index.search(q, 7)
    ref_scores, ref_rows = brute_force(x.astype(np.float64), q.astype(np.float64), 7, metric)
    assert scores.shape == (25, 7)
    assert got == [[ids[r] for r in row] for row in ref_rows]
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
    # a single (D,) query, and k larger than N
    s1, i1 = index.search(q[0], 5)
    assert i1 == [got[0][:5]]
    s_all, i_all = index.search(q[:1], 1000)
    assert s_all.shape == (1, 300) and sorted(i_all[0]) == sorted(ids)


@pytest.mark.parametrize("kind,opts", [("ivf", {"nlist": 32, "nprobe": 8}), ("hnsw", {"hnsw_m": 16, "ef_search": 64})])
def test_approximate_recall_at_10(kind: str, opts: dict) -> None:
    x = clustered(3000, 24, 30, seed=1)
    q = clustered(100, 24, 30, seed=1)[:100] + np.random.default_rng(2).normal(size=(100, 24)).astype(np.float32) * 0.1
    ids = [str(i) for i in range(len(x))]
    _, exact = brute_force(x, q, 10, "ip")
    index = EmbeddingIndex.build(x, ids, kind=kind, use_gpu=False, **opts)
    _, got = index.search(q, 10)
    recall = np.mean([len(set(g) & {ids[r] for r in e}) / 10 for g, e in zip(got, exact)])
    assert recall >= 0.9, recall


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path: Path, kind: str) -> None:
    x = clustered(500, 8, 5, seed=3)
    ids = [f"c{i}" for i in range(500)]
    index = EmbeddingIndex.build(x, ids, kind=kind, metric="l2" if kind == "hnsw" else "ip", use_gpu=False,
                                 source={"store": "s.h5", "key": "fused/concat"})
    path = index.save(tmp_path / "sub" / "x.faiss")
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["ids"] == ids and meta["kind"] == kind and meta["dim"] == 8 and meta["count"] == 500
    assert meta["metric"] == index.params.metric and meta["source"] == {"store": "s.h5", "key": "fused/concat"}
    loaded = EmbeddingIndex.load(path, use_gpu=False)
    assert loaded.params == index.params and loaded.ids == ids
    s1, i1 = index.search(x[:20], 5)
    s2, i2 = loaded.search(x[:20], 5)
    assert i1 == i2
    np.testing.assert_allclose(s1, s2)
    sidecar_path(path).write_text(json.dumps({**meta, "ids": ids[:-1]}))
    with pytest.raises(ValueError, match="x.faiss.*500"):
        EmbeddingIndex.load(path, use_gpu=False)


def test_bad_input() -> None:
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="kind"):
        EmbeddingIndex.build(x, list("abcd"), kind="lsh")
    with pytest.raises(ValueError, match="unique"):
        EmbeddingIndex.build(x, list("abca"), use_gpu=False)
    with pytest.raises(ValueError, match="N = len"):
        EmbeddingIndex.build(x, list("abc"), use_gpu=False)
    index = EmbeddingIndex.build(np.eye(4, 3, dtype=np.float32), list("abcd"), use_gpu=False)
    with pytest.raises(ValueError, match=r"\(Q, 3\)"):
        index.search(np.zeros((2, 5)), 1)
    if not gpu_available():
        with pytest.raises(RuntimeError, match="GPU"):
            EmbeddingIndex.build(x, list("abcd"), use_gpu=True)


def make_store(path: Path, n: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    data = {
        "ids": [f"s{i:02d}" for i in range(n)],
        "emotion": rng.integers(0, 3, n),
        "features": {"audio": rng.normal(size=(n, 6)), "video": rng.normal(size=(n, 5))},
        "projections": {m: rng.normal(size=(n, 4)) for m in ("audio", "video")},
        "present": {"audio": np.arange(n) % 5 != 0, "video": np.arange(n) % 2 == 0},
        "fused": {"mean": rng.normal(size=(n, 4)), "concat": rng.normal(size=(n, 11))},
    }
    for m in ("audio", "video"):
        data["projections"][m] /= np.linalg.norm(data["projections"][m], axis=1, keepdims=True)
    w = FeatureStoreWriter(path, ["audio", "video"], {"audio": 6, "video": 5}, 4, fused_dims={"mean": 4, "concat": 11},
                           labels={"emotion": ["calm", "happy", "sad"]}, fsync=False)
    w.append(data["ids"], {"emotion": data["emotion"]}, {}, data["features"], projections=data["projections"],
             present=data["present"],
             fused=data["fused"])
    w.finish()
    return data


def test_index_from_store_keys(tmp_path: Path) -> None:
    """Keys follow the store's one view rule: a bare modality is its features, projections are named in full."""
    data = make_store(tmp_path / "f.h5")
    any_present = data["present"]["audio"] | data["present"]["video"]
    with FeatureStore(tmp_path / "f.h5") as store:
        for key, canonical, rows_mask, vectors in [
            ("audio", "features/audio", data["present"]["audio"], data["features"]["audio"]),
            ("projections/audio", "projections/audio", data["present"]["audio"], data["projections"]["audio"]),
            ("features/video", "features/video", data["present"]["video"], data["features"]["video"]),
            ("mean", "fused/mean", any_present, data["fused"]["mean"]),
            ("fused/concat", "fused/concat", any_present, data["fused"]["concat"]),
        ]:
            index = index_from_store(store, key, use_gpu=False)
            rows = np.flatnonzero(rows_mask)
            assert {k: index.source[k] for k in ("store", "key")} == {"store": str(tmp_path / "f.h5"), "key": canonical}
            assert index.ids == [data["ids"][r] for r in rows]
            # every indexed vector finds itself first
            _, got = index.search(vectors[rows], 1)
            assert [g[0] for g in got] == index.ids
        assert index_from_store(store, use_gpu=False).source["key"] == "fused/mean"  # the default
        with pytest.raises(KeyError, match=r"'fused' .*several fused modes.*'fused/mean', 'fused/concat'"):
            index_from_store(store, "fused")
        with pytest.raises(KeyError, match="'text' is not in"):
            index_from_store(store, "text")


def parse_args(mod, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by the options of the CLI module ``mod`` (shared with the other CLI tests)."""
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return p.parse_args(argv)


def test_cli_index(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_store(tmp_path / "f.h5")
    out = tmp_path / "f.faiss"
    assert cli_index.run(parse_args(cli_index, ["--features", str(tmp_path / "f.h5"), "--modality", "video",
                                            "--out", str(out), "--gpu", "no"])) == 0
    assert str(out) in capsys.readouterr().out
    loaded = EmbeddingIndex.load(out, use_gpu=False)
    assert loaded.ids == [i for i, p in zip(data["ids"], data["present"]["video"]) if p]
    assert loaded.source["key"] == "features/video" and loaded.dim == data["features"]["video"].shape[1]
    with pytest.raises(UserError, match="missing.h5"):
        cli_index.run(parse_args(cli_index, ["--features", str(tmp_path / "missing.h5"), "--out", str(out)]))
    assert "fused/nope" in cli_error("index", "--features", str(tmp_path / "f.h5"), "--modality", "fused/nope",
                                     "--out", str(out))


def test_build_index_script(tmp_path: Path) -> None:
    pytest.importorskip("contrastive_mer.cli.main", reason="the cmer entry point (cli/main.py) is not there yet")
    import subprocess
    import sys
    make_store(tmp_path / "f.h5")
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, str(repo / "features" / "build_index.py"), "--features",
                          str(tmp_path / "f.h5"), "--out", str(tmp_path / "x.faiss"), "--gpu", "no"],
                         capture_output=True, text=True, cwd=repo, timeout=120)
    assert res.returncode == 0, res.stderr
    assert EmbeddingIndex.load(tmp_path / "x.faiss", use_gpu=False).source["key"] == "fused/mean"
