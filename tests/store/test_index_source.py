"""An index answers only for the store it was built from (issue 12 item 1)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.cli import index as cli_index
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from contrastive_mer.store.index import EmbeddingIndex, check_index_source, sidecar_path, store_identity
from tests.conftest import cli_error
from tests.store.test_index import make_store, parse_args


def write_store(path: Path, ids: list[str], checkpoint: str, seed: int = 0) -> None:
    """A one-modality store with the given ids and checkpoint hash."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    proj = rng.normal(size=(n, 4))
    proj /= np.linalg.norm(proj, axis=1, keepdims=True)
    w = FeatureStoreWriter(path, ["audio"], {"audio": 3}, 4, fused_dims={"mean": 4}, fsync=False,
                           attrs={"checkpoint_sha256": checkpoint})
    w.append(ids, {}, {}, {"audio": rng.normal(size=(n, 3))}, projections={"audio": proj},
             present={"audio": np.ones(n, bool)}, fused={"mean": proj})
    w.finish()


def build(features: Path, out: Path, key: str = "projections/audio") -> str:
    cli_index.run(parse_args(cli_index, ["--features", str(features), "--modality", key, "--out", str(out),
                                         "--gpu", "no"]))
    return str(out)


def test_identity_is_ids_hash_count_and_checkpoint(tmp_path: Path) -> None:
    ids = ["a", "b", "c"]
    write_store(tmp_path / "s.h5", ids, "f" * 64)
    with FeatureStore(tmp_path / "s.h5") as store:
        ident = store_identity(store)
    assert ident == {"ids_sha256": hashlib.sha256(b"a\nb\nc").hexdigest(), "count": 3, "checkpoint_sha256": "f" * 64}
    idx = build(tmp_path / "s.h5", tmp_path / "s.faiss")
    meta = json.loads(sidecar_path(idx).read_text())
    assert meta["source"]["ids_sha256"] == ident["ids_sha256"] and meta["source"]["checkpoint_sha256"] == "f" * 64
    assert meta["source"]["key"] == "projections/audio" and meta["metric"] == "ip"


@pytest.mark.parametrize("other_ids,other_ckpt,what", [
    (["a", "b", "c"], "e" * 64, "checkpoint eeeeeeeeeeee"),    # same clips, another model
    (["a", "b", "d"], "f" * 64, "not from"),                  # same model, other clips
    (["a", "b"], "f" * 64, "2 clips"),                        # a subset
])
def test_retrieve_refuses_an_index_of_another_store(tmp_path: Path, other_ids, other_ckpt, what) -> None:
    write_store(tmp_path / "A.h5", ["a", "b", "c"], "f" * 64)
    write_store(tmp_path / "B.h5", other_ids, other_ckpt, seed=1)
    idx = build(tmp_path / "A.h5", tmp_path / "A.faiss")
    for query in (["--query", "a"], ["--vector-file", str(tmp_path / "v.npy")]):
        np.save(tmp_path / "v.npy", np.ones(4, np.float32))
        line = cli_error("retrieve", "--features", str(tmp_path / "B.h5"), "--index", idx, *query)
        assert "A.faiss was built from another store" in line and "B.h5" in line and what in line
        assert "cmer index --features" in line


def test_same_content_in_another_file_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A copy (or re-extraction) of the same clips with the same checkpoint is the same content."""
    from contrastive_mer.cli import retrieve as cli_retrieve
    write_store(tmp_path / "A.h5", ["a", "b", "c"], "f" * 64)
    write_store(tmp_path / "copy.h5", ["a", "b", "c"], "f" * 64)
    idx = build(tmp_path / "A.h5", tmp_path / "A.faiss")
    assert cli_retrieve.run(parse_args(cli_retrieve, ["--features", str(tmp_path / "copy.h5"), "--index", idx,
                                                      "--query", "a", "--k", "2"])) == 0
    assert "query a" in capsys.readouterr().out


def test_view_missing_or_of_another_width_is_refused(tmp_path: Path) -> None:
    make_store(tmp_path / "f.h5")
    idx = EmbeddingIndex.load(build(tmp_path / "f.h5", tmp_path / "f.faiss", "features/video"), use_gpu=False)
    with FeatureStore(tmp_path / "f.h5") as store:
        check_index_source(idx, store)  # its own store passes
        idx.source["key"] = "features/text"
        with pytest.raises(ValueError, match="indexes 'features/text', which .* does not hold"):
            check_index_source(idx, store)
        idx.source["key"] = "features/audio"  # dim 6, index has dim 5
        with pytest.raises(ValueError, match="dim 5 but .* dim 6"):
            check_index_source(idx, store)


def test_old_sidecar_is_refused_and_an_index_without_identity_checks_the_ids(tmp_path: Path) -> None:
    """A sidecar from before digests were recorded (version 1) cannot be checked: refused with a rebuild hint.
    An index built in memory without the store's identity must at least name only ids of the store."""
    make_store(tmp_path / "f.h5")
    write_store(tmp_path / "other.h5", ["x", "y"], "")
    path = build(tmp_path / "f.h5", tmp_path / "f.faiss", "projections/audio")
    meta = json.loads(sidecar_path(path).read_text())
    old_meta = {k: meta[k] for k in ("kind", "metric", "params", "dim", "count", "ids")}
    old_meta.update(sidecar_version=1, source={"store": meta["source"]["store"], "key": meta["source"]["key"]})
    sidecar_path(path).write_text(json.dumps(old_meta))
    with pytest.raises(ValueError, match="version 1, not 2.*no digests.*rebuild it with `cmer index --features"):
        EmbeddingIndex.load(path, use_gpu=False)
    with FeatureStore(tmp_path / "f.h5") as store:
        view = store.view("projections/audio")
        old = EmbeddingIndex.build(view.vectors[view.rows], store.ids[view.rows].tolist(), use_gpu=False,
                                   source={"store": str(store.path), "key": "projections/audio"})
        check_index_source(old, store)
    with FeatureStore(tmp_path / "other.h5") as store:
        with pytest.raises(ValueError, match="names 3. id.* does not hold .*first: 's01'"):
            check_index_source(old, store)
