"""Cross-modal retrieval metrics against a naive numpy ranking, and the ``cmer retrieve`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.cli import index as cli_index
from contrastive_mer.cli import retrieve as cli_retrieve
from contrastive_mer.errors import UserError
from contrastive_mer.evaluation.retrieval import cross_modal_retrieval, format_table, retrieval_ranks
from tests.conftest import cli_error
from tests.store.test_index import make_store, parse_args


def naive_ranks(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Rank of the matching gallery row via a full argsort of cosine similarities."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    order = np.argsort(-(q @ g.T), axis=1)
    return np.array([int(np.flatnonzero(order[i] == i)[0]) + 1 for i in range(len(q))])


def test_ranks_match_naive_and_chunking_changes_nothing() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    b = a + rng.normal(size=(200, 8)) * 1.5
    ref = naive_ranks(a, b)
    np.testing.assert_array_equal(retrieval_ranks(a, b), ref)
    np.testing.assert_array_equal(retrieval_ranks(a, b, max_block_elements=450), ref)  # blocks of 2 rows
    assert retrieval_ranks(a, a).tolist() == [1] * 200


def test_cross_modal_metrics_with_missing_rows() -> None:
    rng = np.random.default_rng(1)
    n = 150
    base = rng.normal(size=(n, 6))
    proj = {m: base + rng.normal(size=(n, 6)) * s for m, s in [("audio", 1.0), ("video", 1.2), ("text", 0.8)]}
    present = {"audio": rng.random(n) > 0.2, "video": rng.random(n) > 0.3, "text": np.ones(n, bool)}
    res = cross_modal_retrieval(proj, present, ks=(1, 5, 10), max_block_elements=1000)
    assert sorted(res) == sorted(f"{a}-{b}" for a in proj for b in proj if a != b)
    for pair, r in res.items():
        a, b = pair.split("-")
        rows = np.flatnonzero(present[a] & present[b])
        ranks = naive_ranks(proj[a][rows], proj[b][rows])
        assert r["count"] == len(rows)
        for k in (1, 5, 10):
            assert r[f"R@{k}"] == pytest.approx(100 * np.mean(ranks <= k))
        assert r["median_rank"] == pytest.approx(np.median(ranks))
        assert r["mean_rank"] == pytest.approx(np.mean(ranks))
    assert res["audio-video"]["R@1"] != res["video-audio"]["R@1"] or \
        res["audio-video"]["median_rank"] != res["video-audio"]["median_rank"]  # directions differ
    table = format_table(res)
    assert "audio-video" in table and "R@10" in table and "MedR" in table
    assert f"{res['text-audio']['R@5']:.1f}" in table


def test_no_common_rows_gives_nan() -> None:
    proj = {"a": np.eye(3), "b": np.eye(3)}
    res = cross_modal_retrieval(proj, {"a": np.array([1, 0, 0], bool), "b": np.array([0, 1, 1], bool)})
    assert res["a-b"]["count"] == 0 and np.isnan(res["a-b"]["R@1"])
    with pytest.raises(ValueError, match="present\\['a'\\]"):
        cross_modal_retrieval(proj, {"a": np.ones(2, bool), "b": np.ones(3, bool)})


def test_cli_retrieve_query_and_vector_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_store(tmp_path / "f.h5")
    feats, idx = str(tmp_path / "f.h5"), str(tmp_path / "f.faiss")
    cli_index.run(parse_args(cli_index, ["--features", feats, "--modality", "projections/audio", "--out", idx,
                                     "--gpu", "no"]))
    capsys.readouterr()
    assert cli_retrieve.run(parse_args(cli_retrieve, ["--features", feats, "--index", idx, "--query", "s01", "--k", "3",
                                                  "--json", str(tmp_path / "r.json")])) == 0
    printed = capsys.readouterr().out
    # naive reference: cosine neighbours of s01 among clips with audio, excluding s01 itself
    rows = np.flatnonzero(data["present"]["audio"])
    x = data["projections"]["audio"][rows]
    sims = x @ data["projections"]["audio"][1]
    order = [r for r in np.argsort(-sims) if data["ids"][rows[r]] != "s01"][:3]
    res = json.loads((tmp_path / "r.json").read_text())["queries"][0]
    assert [h["id"] for h in res["results"]] == [data["ids"][rows[r]] for r in order]
    np.testing.assert_allclose([h["score"] for h in res["results"]], sims[order], rtol=1e-5)
    names = ["calm", "happy", "sad"]
    assert res["labels"] == {"emotion": names[data["emotion"][1]]}
    assert res["results"][0]["labels"]["emotion"] == names[data["emotion"][rows[order[0]]]]
    assert "query s01" in printed and res["results"][0]["id"] in printed and "r.json" in printed
    np.save(tmp_path / "v.npy", np.stack([data["projections"]["audio"][1], data["projections"]["audio"][2]]))
    cli_retrieve.run(parse_args(cli_retrieve, ["--features", feats, "--index", idx, "--vector-file",
                                           str(tmp_path / "v.npy"), "--k", "2", "--json", str(tmp_path / "v.json")]))
    out = json.loads((tmp_path / "v.json").read_text())["queries"]
    assert [h["id"] for h in out[0]["results"]] == ["s01", res["results"][0]["id"]]
    assert out[1]["results"][0]["id"] == "s02"
    assert "'nope' is not in" in cli_error("retrieve", "--features", feats, "--index", idx, "--query", "nope")
    with pytest.raises(UserError, match="no usable projections/audio"):  # s00 lacks audio
        cli_retrieve.run(parse_args(cli_retrieve, ["--features", feats, "--index", idx, "--query", "s00"]))
    np.save(tmp_path / "bad.npy", np.zeros((2, 3)))
    with pytest.raises(UserError, match="dim 4"):
        cli_retrieve.run(parse_args(cli_retrieve, ["--features", feats, "--index", idx, "--vector-file",
                                               str(tmp_path / "bad.npy")]))


def test_cli_cross_modal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_store(tmp_path / "f.h5")
    assert cli_retrieve.run(parse_args(cli_retrieve, ["--features", str(tmp_path / "f.h5"), "--cross-modal",
                                                  "--json", str(tmp_path / "x.json")])) == 0
    printed = capsys.readouterr().out
    ref = cross_modal_retrieval(data["projections"], data["present"])
    got = json.loads((tmp_path / "x.json").read_text())["pairs"]
    assert sorted(got) == sorted(ref)
    for pair in ref:
        assert got[pair] == pytest.approx(ref[pair])
    assert "audio-video" in printed and "video-audio" in printed
