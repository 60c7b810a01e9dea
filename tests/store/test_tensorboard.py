"""``cmer project``: the projector files parse back to the store's vectors and metadata, and TensorBoard's own
config parser reads projector_config.pbtxt."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_plugin
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from contrastive_mer.cli.main import main
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from tests.conftest import cli_error

EMOTIONS = ["neutral", "happy", "sad"]


def write_store(path: Path) -> None:
    """Two modalities (video absent in some rows), a class label with one missing value, a float label with a
    NaN, speaker groups holding a space and a tab, and a fused mode."""
    rng = np.random.default_rng(0)
    n = 12
    feats = {"audio": rng.normal(size=(n, 5)).astype(np.float32), "video": rng.normal(size=(n, 3)).astype(np.float32)}
    proj = {m: rng.normal(size=(n, 4)).astype(np.float32) for m in feats}
    present = {"audio": np.ones(n, bool), "video": np.arange(n) % 3 != 0}
    emotion = np.arange(n) % 3
    emotion[4] = -1
    valence = rng.normal(size=n)
    valence[7] = np.nan
    w = FeatureStoreWriter(path, ["audio", "video"], {"audio": 5, "video": 3}, 4, fused_dims={"mean": 4},
                           labels={"emotion": EMOTIONS, "valence": None}, groups=["speaker"], fsync=False)
    w.append([f"clip{i:02d}" for i in range(n)], {"emotion": emotion, "valence": valence},
             {"speaker": [f"spk {i % 2}" if i != 5 else "odd\tname" for i in range(n)]}, feats, projections=proj,
             present=present,
             fused={"mean": rng.normal(size=(n, 4)).astype(np.float32)})
    w.finish()


def read_tsv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_projector_files_parse_back_to_the_store(tmp_path: Path, capsys) -> None:
    store_path, out = tmp_path / "s.h5", tmp_path / "proj"
    write_store(store_path)
    assert main(["project", "--features", str(store_path), "--view", "video,fused,projections/audio",
                 "--output", str(out)]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    config = text_format.Parse((out / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert [e.tensor_name for e in config.embeddings] == ["features/video", "fused/mean", "projections/audio"]
    with FeatureStore(store_path) as store:
        for emb in config.embeddings:
            vectors = np.loadtxt(out / emb.tensor_path, delimiter="\t", dtype=np.float32, ndmin=2)
            rows = np.flatnonzero(store.present("video")) if emb.tensor_name == "features/video" \
                else np.arange(len(store))
            np.testing.assert_array_equal(vectors, store.dataset(emb.tensor_name)[rows])  # exact round trip
            tb_reader = getattr(projector_plugin, "_read_tensor_tsv_file", None)  # TensorBoard's own TSV reader
            if tb_reader is not None:
                np.testing.assert_array_equal(tb_reader(str(out / emb.tensor_path)), vectors)
            meta = read_tsv(out / emb.metadata_path)
            assert meta[0] == ["id", "emotion", "valence", "speaker"]
            assert len(meta) == len(rows) + 1 and all(len(line) == 4 for line in meta)
            by_id = {line[0]: line for line in meta[1:]}
            assert [line[0] for line in meta[1:]] == [str(store.ids[r]) for r in rows]
            for r in rows:
                line = by_id[str(store.ids[r])]
                code = int(store.labels("emotion")[r])
                assert line[1] == ("-" if code < 0 else EMOTIONS[code])
                value = store.labels("valence")[r]
                assert (line[2] == "-") if np.isnan(value) else abs(float(line[2]) - value) < 1e-5
                assert line[3] == " ".join(str(store.groups("speaker")[r]).split())


def test_max_rows_and_errors(tmp_path: Path) -> None:
    store_path = tmp_path / "s.h5"
    write_store(store_path)
    assert main(["project", "--features", str(store_path), "--view", "audio", "--output", str(tmp_path / "p"),
                 "--max-rows", "5"]) == 0
    assert len(read_tsv(tmp_path / "p" / "features_audio" / "tensors.tsv")) == 5
    assert "view 'text'" in cli_error("project", "--features", str(store_path), "--view", "text", "--output",
                                      str(tmp_path / "q"))
    assert "--max-rows" in cli_error("project", "--features", str(store_path), "--output", str(tmp_path / "q"),
                                     "--max-rows", "0")
    assert "cmer project: error:" in cli_error("project", "--features", str(tmp_path / "missing.h5"), "--output",
                                               str(tmp_path / "q"))
