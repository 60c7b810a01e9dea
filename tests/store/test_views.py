"""The store's one view rule (``FeatureStore.view``) against h5py reads, and probe/index reading the same view."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from contrastive_mer.cli import index as cli_index
from contrastive_mer.cli import probe as cli_probe
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from contrastive_mer.store.index import EmbeddingIndex
from tests.store.test_index import parse_args

N = 24
MODS = ("audio", "video")
DIMS = {"audio": 5, "video": 3}


def make_store(path: Path, modes: dict[str, int] | None = None, projections: bool = True) -> dict:
    """A store whose row 3 has no modality, row 5 a NaN audio feature, video absent in every third row."""
    rng = np.random.default_rng(0)
    modes = {"concat": 8} if modes is None else modes
    present = {"audio": np.arange(N) % 7 != 6, "video": np.arange(N) % 3 != 0}
    present["audio"][3] = present["video"][3] = False
    data = {"ids": [f"c{i:02d}" for i in range(N)], "emotion": np.arange(N) % 3,
            "speaker": [f"spk{i % 4}" for i in range(N)], "present": present,
            "features": {m: rng.normal(size=(N, DIMS[m])).astype(np.float32) for m in MODS},
            "projections": {m: rng.normal(size=(N, 4)).astype(np.float32) for m in MODS},
            "fused": {k: rng.normal(size=(N, d)).astype(np.float32) for k, d in modes.items()}}
    data["features"]["audio"][5, 1] = np.nan
    w = FeatureStoreWriter(path, list(MODS), DIMS, 4 if projections else None, fused_dims=modes,
                           labels={"emotion": ["calm", "happy", "sad"]}, groups=["speaker"], fsync=False)
    w.append(data["ids"], {"emotion": data["emotion"]}, {"speaker": data["speaker"]}, data["features"],
             projections=data["projections"] if projections else {}, present=present, fused=data["fused"])
    w.finish()
    return data


def reference(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Naive reading of the rule with h5py: the dataset, and present (any modality for fused) & finite rows."""
    with h5py.File(path, "r") as f:
        x = f[key][...]
        group, name = key.split("/")
        mods = list(MODS) if group == "fused" else [name]
        present = np.any([f[f"present/{m}"][...] for m in mods], axis=0)
    return x, present & np.isfinite(x).all(axis=1)


@pytest.mark.parametrize("name, key", [
    ("audio", "features/audio"),                   # a modality = its features (before projection)
    ("video", "features/video"),
    ("features/audio", "features/audio"),          # full keys as given
    ("projections/audio", "projections/audio"),    # projections only in full
    ("fused/concat", "fused/concat"),
    ("fused", "fused/concat"),                     # the only fused mode
    ("concat", "fused/concat"),                    # a fused mode's own name
])
def test_each_name_form(tmp_path: Path, name: str, key: str) -> None:
    make_store(tmp_path / "f.h5")
    x_ref, usable_ref = reference(tmp_path / "f.h5", key)
    with FeatureStore(tmp_path / "f.h5") as store:
        view = store.view(name)
        assert view.key == key
        np.testing.assert_array_equal(view.vectors, x_ref)
        np.testing.assert_array_equal(view.usable, usable_ref)
        np.testing.assert_array_equal(view.rows, np.flatnonzero(usable_ref))
        assert store.view_dim(name) == x_ref.shape[1]
        for row in range(N):  # one row at a time agrees with the whole view
            row_key, vector, usable = store.view_row(name, row)
            assert row_key == key and usable == usable_ref[row]
            np.testing.assert_array_equal(vector, x_ref[row])


def test_usable_rows(tmp_path: Path) -> None:
    data = make_store(tmp_path / "f.h5")
    with FeatureStore(tmp_path / "f.h5") as store:
        audio, fused = store.view("audio"), store.view("fused")
    assert not audio.usable[3] and not fused.usable[3]  # no modality present
    assert data["present"]["audio"][5] and not audio.usable[5]  # present but not finite
    assert fused.usable[5] and fused.usable[13] and not audio.usable[13]  # row 13: only video present


def test_several_fused_modes(tmp_path: Path) -> None:
    make_store(tmp_path / "f.h5", modes={"mean": 4, "concat": 8})
    with FeatureStore(tmp_path / "f.h5") as store:
        with pytest.raises(KeyError, match=r"'fused' .*choose one of \['fused/mean', 'fused/concat'\]"):
            store.view("fused")
        assert store.view("fused/mean").key == "fused/mean"
        assert store.expand_views(["audio", "fused"]) == [
            ("audio", "features/audio"), ("fused", "fused/mean"), ("fused", "fused/concat")]
        assert store.expand_views() == [("audio", "features/audio"), ("video", "features/video"),
                                        ("fused", "fused/mean"), ("fused", "fused/concat")]


@pytest.mark.parametrize("name", ["text", "projections/text", "fused/nope", "labels/emotion", "features/", "mean"])
def test_unknown_name_lists_the_views(tmp_path: Path, name: str) -> None:
    make_store(tmp_path / "f.h5")
    with FeatureStore(tmp_path / "f.h5") as store, pytest.raises(KeyError) as err:
        store.view(name)
    msg = err.value.args[0]
    assert repr(name) in msg and str(tmp_path / "f.h5") in msg
    for listed in ("audio", "fused", "features/audio", "projections/video", "fused/concat"):
        assert repr(listed) in msg


def test_projections_absent_and_no_fused(tmp_path: Path) -> None:
    make_store(tmp_path / "f.h5", modes={}, projections=False)
    with FeatureStore(tmp_path / "f.h5") as store:
        with pytest.raises(KeyError, match="'projections/audio' is not in"):
            store.view("projections/audio")
        with pytest.raises(KeyError, match="'fused' matches no fused mode"):
            store.view("fused")
        assert store.expand_views() == [("audio", "features/audio"), ("video", "features/video")]


def test_probe_and_index_read_the_same_view(tmp_path: Path, monkeypatch, capsys) -> None:
    """``cmer probe --modalities audio`` and ``cmer index --modality audio`` read the same dataset and rows."""
    path = tmp_path / "f.h5"
    data = make_store(path, modes={"mean": 4, "concat": 8})
    read: dict[str, list[tuple[str, str, np.ndarray]]] = {"probe": [], "index": []}
    original, command = FeatureStore.view, {"name": ""}

    def spy(store: FeatureStore, name: str):
        view = original(store, name)
        read[command["name"]].append((name, view.key, view.usable))
        return view

    monkeypatch.setattr(FeatureStore, "view", spy)
    command["name"] = "probe"
    probe_argv = ["--train", str(path), "--folds", "2", "--group", "speaker", "--label", "emotion",
                  "--modalities", "audio", "--probe", "knn", "--k", "3", "--json", str(tmp_path / "p.json")]
    assert cli_probe.run(parse_args(cli_probe, probe_argv)) == 0
    command["name"] = "index"
    assert cli_index.run(parse_args(cli_index, ["--features", str(path), "--modality", "audio",
                                                "--out", str(tmp_path / "a.faiss"), "--gpu", "no",
                                                "--drop-nonfinite"])) == 0  # row 5's NaN: refused unless told
    capsys.readouterr()
    assert {key for _, key, _ in read["probe"]} == {key for _, key, _ in read["index"]} == {"features/audio"}
    usable = read["index"][0][2]
    np.testing.assert_array_equal(read["probe"][0][2], usable)
    # the probe tested every usable row once (folds), the index holds exactly those rows' features
    probe_rows = json.loads((tmp_path / "p.json").read_text())["rows"][0]
    assert probe_rows["view"] == "audio" and probe_rows["n_test"] == int(usable.sum())
    index = EmbeddingIndex.load(tmp_path / "a.faiss", use_gpu=False)
    rows = np.flatnonzero(usable)
    assert index.source["key"] == "features/audio" and index.ids == [data["ids"][r] for r in rows]
    x = data["features"]["audio"][rows]
    np.testing.assert_allclose(index.index.reconstruct_n(0, len(rows)),
                               x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5)
