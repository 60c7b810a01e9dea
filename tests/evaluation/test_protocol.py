"""Probe protocol over arrays and feature stores, and the `cmer probe` command."""

import argparse
import json
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.cli import probe as probe_cli
from contrastive_mer.data.splits import group_kfold
from contrastive_mer.evaluation.knn import KnnProbeConfig, knn_probe
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.evaluation.protocol import ProbeView, format_table, kfold_views, probe_stores, run_probes
from contrastive_mer.store.hdf5 import FeatureStoreWriter, LabelSpec
from tests.conftest import cli_error

CLASSES = ["neutral", "happy", "sad", "angry"]
FAST = LinearProbeConfig(weight_decays=(1e-3, 1e-1, 10.0))


def make_data(n: int, seed: int, n_speakers: int = 6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    centres = np.random.default_rng(100).normal(size=(4, 16)) * 0.8
    audio = (centres[y] + rng.normal(size=(n, 16))).astype(np.float32)
    video = rng.normal(size=(n, 8)).astype(np.float32)  # carries no label information
    present_video = rng.random(n) < 0.7
    video[~present_video] = 1e3  # absent rows hold junk that must never reach a probe
    y_stored = y.copy()
    y_stored[rng.random(n) < 0.05] = -1  # missing labels
    speakers = np.array([f"spk{(i * 7) % n_speakers}" for i in range(n)])
    multi = (rng.random((n, 3)) < 0.2 + 0.2 * (y[:, None] == np.arange(3))).astype(np.float32)
    multi[rng.random(n) < 0.05] = np.nan  # missing multi-label rows
    return dict(y=y_stored, audio=audio, video=video, present_video=present_video, speakers=speakers,
                valence=rng.normal(size=n).astype(np.float32), multi=multi)


def write_store(path: Path, d: dict) -> Path:
    n = len(d["y"])
    w = FeatureStoreWriter(path, ["audio", "video"], {"audio": 16, "video": 8}, projection_dim=None,
                           fused_dims={"concat": 24}, labels={"emotion": CLASSES, "valence": None,
                                                     "tags": LabelSpec(("a", "b", "c"), multi_label=True)},
                           groups=["speaker"], fsync=False, part_rows=10_000)
    w.append([f"{path.stem}-{i}" for i in range(n)], {"emotion": d["y"], "valence": d["valence"], "tags": d["multi"]},
             {"speaker": d["speakers"]}, {"audio": d["audio"], "video": d["video"]}, projections={},
             present={"audio": np.ones(n, bool), "video": d["present_video"]},
             fused={"concat": np.concatenate([d["audio"], np.where(d["present_video"][:, None], d["video"], 0)], 1)})
    return w.finish()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    train, test = make_data(300, seed=1), make_data(150, seed=2)
    return write_store(root / "train.h5", train), write_store(root / "test.h5", test), train, test


def test_run_probes_on_arrays_aggregates_folds() -> None:
    d = make_data(240, seed=3)
    keep = d["y"] >= 0
    X, y, g = d["audio"][keep], d["y"][keep], d["speakers"][keep]
    views = kfold_views("audio", X, y, g, k=3, seed=0)
    res = run_probes(views, "multiclass", "emotion", ("linear", "knn"), linear=FAST, knn=KnnProbeConfig(k=5),
                     num_classes=4)
    assert [(r.view, r.probe) for r in res.rows] == [("audio", "linear"), ("audio", "knn")]
    # reference: the same folds probed one by one
    lin, kn = [], []
    for tr, te in group_kfold(g, 3, seed=0):
        fit = linear_probe(X[tr], y[tr], X[te], y[te], FAST, groups_train=g[tr], num_classes=4)
        lin.append(fit.metrics["accuracy"])
        kn.append(knn_probe(X[tr], y[tr], X[te], y[te], KnnProbeConfig(k=5), num_classes=4).metrics["accuracy"])
    assert res.rows[0].metrics["accuracy"] == pytest.approx(np.mean(lin))
    assert res.rows[0].std["accuracy"] == pytest.approx(np.std(lin))
    assert res.rows[1].metrics["accuracy"] == pytest.approx(np.mean(kn))
    assert res.rows[0].n_test == len(y)  # every sample tested once
    assert res.rows[0].details["confusion_matrix"].sum() == len(y)
    assert len(res.rows[0].details["weight_decay"]) == 3
    json.dumps(res.to_dict(), allow_nan=False)
    table = format_table(res)
    assert "audio" in table and "±" in table and "uar" in table


def test_single_split_array_view() -> None:
    d = make_data(200, seed=4)
    keep = d["y"] >= 0
    X, y = d["audio"][keep], d["y"][keep]
    view = ProbeView("baseline", X[:120], y[:120], None, X[120:], y[120:])
    res = run_probes([view], "multiclass", probes=("knn",), knn=KnnProbeConfig(k=3), num_classes=4)
    ref = knn_probe(X[:120], y[:120], X[120:], y[120:], KnnProbeConfig(k=3), num_classes=4)
    assert res.rows[0].metrics["f1_macro"] == pytest.approx(ref.metrics["f1_macro"])
    assert res.rows[0].std == {} and res.rows[0].n_train == 120


def test_train_test_stores(stores) -> None:
    train_path, test_path, train, test = stores
    res = probe_stores(train_path, test_path, label="emotion", probes=("linear", "knn"), linear=FAST,
                       knn=KnnProbeConfig(k=10))
    assert res.task == "multiclass" and res.class_names == CLASSES
    assert [(r.view, r.probe) for r in res.rows] == [(v, p) for v in ("audio", "video", "fused/concat")
                                                     for p in ("linear", "knn")]
    rows = {(r.view, r.probe): r for r in res.rows}
    # video is restricted to present rows with a label; audio to labelled rows
    assert rows["video", "linear"].n_train == int(((train["y"] >= 0) & train["present_video"]).sum())
    assert rows["video", "linear"].n_test == int(((test["y"] >= 0) & test["present_video"]).sum())
    assert rows["audio", "knn"].n_test == int((test["y"] >= 0).sum())
    # audio probe equals a direct call on the same rows, with speaker groups for the validation split
    tr, te = train["y"] >= 0, test["y"] >= 0
    ref = linear_probe(train["audio"][tr], train["y"][tr], test["audio"][te], test["y"][te],
                       FAST, groups_train=train["speakers"][tr], num_classes=4)
    assert rows["audio", "linear"].metrics["accuracy"] == pytest.approx(ref.metrics["accuracy"])
    assert rows["audio", "linear"].details["weight_decay"] == ref.weight_decay
    assert res.setup["group"] == "speaker"
    assert rows["audio", "linear"].metrics["accuracy"] > 0.6
    assert rows["video", "linear"].metrics["accuracy"] < 0.45  # noise view near chance (0.25)


def test_store_folds_and_regression(stores) -> None:
    train_path, _, train, _ = stores
    res = probe_stores(train_path, label="valence", views=["audio"],
                       folds=3, group="speaker", probes=("knn",), knn=KnnProbeConfig(k=5))
    assert res.task == "regression"
    row = res.rows[0]
    assert row.n_test == len(train["y"]) and len(row.folds) == 3 and set(row.std) >= {"mae", "acc7"}
    res = probe_stores(train_path, label="emotion", views=["video"], folds=3, group="speaker", linear=FAST,
                       probes=("linear",))
    row = res.rows[0]
    assert row.n_test == int(((train["y"] >= 0) & train["present_video"]).sum())
    with pytest.raises(ValueError, match="7 group-disjoint folds from 6"):
        probe_stores(train_path, label="emotion", folds=7, group="speaker")


def test_store_multilabel(stores) -> None:
    train_path, test_path, train, test = stores
    res = probe_stores(train_path, test_path, label="tags", views=["audio"], probes=("knn",),
                       knn=KnnProbeConfig(k=9, temperature=0.1))
    assert res.task == "multilabel" and res.class_names == ["a", "b", "c"]
    tr, te = ~np.isnan(train["multi"]).any(1), ~np.isnan(test["multi"]).any(1)
    ref = knn_probe(train["audio"][tr], train["multi"][tr], test["audio"][te], test["multi"][te],
                    KnnProbeConfig(task="multilabel", k=9, temperature=0.1))
    assert res.rows[0].n_test == int(te.sum())
    assert res.rows[0].metrics["mean_weighted_accuracy"] == pytest.approx(ref.metrics["mean_weighted_accuracy"])
    assert len(res.rows[0].details["weighted_accuracy"]) == 3
    assert "wa" in format_table(res)


def test_errors_name_the_view() -> None:
    d = make_data(60, seed=8)
    keep = d["y"] >= 0
    one_speaker = np.array(["spk0"] * int(keep.sum()))
    view = ProbeView("mfcc", d["audio"][keep], d["y"][keep], one_speaker, d["audio"][keep], d["y"][keep])
    with pytest.raises(ValueError, match="view 'mfcc' fold 0: .*at least 2 distinct groups"):
        run_probes([view], "multiclass", probes=("linear",), linear=FAST)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    probe_cli.add_arguments(parser)
    return probe_cli.run(parser.parse_args(argv))


def test_cli_table_and_json(stores, tmp_path, capsys) -> None:
    train_path, test_path, _, _ = stores
    out = tmp_path / "res.json"
    rc = _cli(["--train", str(train_path), "--test", str(test_path), "--label", "emotion", "--modalities",
               "audio,fused", "--probe", "knn", "--k", "7", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fused/concat" in printed and "knn" in printed and str(out) in printed
    data = json.loads(out.read_text())
    assert [r["view"] for r in data["rows"]] == ["audio", "fused/concat"]
    assert data["rows"][0]["details"]["k"] == 7 and data["setup"]["test"] == str(test_path)


def test_cli_errors(stores) -> None:
    train_path, test_path, _, _ = stores
    base = ["--train", str(train_path), "--label", "emotion"]
    assert "--group" in cli_error("probe", *base, "--folds", "3")
    assert re.search(r"labels/arousal' is not in .*train.h5",
                     cli_error("probe", "--train", str(train_path), "--test", str(test_path), "--label", "arousal"))
    assert re.search(r"'text'.*modalities", cli_error("probe", *base, "--test", str(test_path), "--modalities", "text"))
    assert "6 distinct" in cli_error("probe", *base, "--folds", "7", "--group", "speaker")
    assert "does not exist" in cli_error("probe", "--train", str(train_path) + ".missing", "--test", str(test_path),
                                         "--label", "emotion")


def test_probe_script(stores, monkeypatch, capsys) -> None:
    train_path, _, _, _ = stores
    script = Path(__file__).resolve().parents[2] / "probes" / "knn_probe.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--train", str(train_path), "--folds", "2", "--group",
                                      "speaker", "--label", "emotion", "--modalities", "audio"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "knn" in out and "linear" not in out and "2 folds by speaker" in out


def test_a_view_with_an_empty_fold_is_reported_not_probed_and_the_others_kept(tmp_path, capsys) -> None:
    """Issue 22, item 4: video present only in speaker spk0's clips, 3 folds by speaker: ``cmer probe`` (exit 0)
    probes audio and fused, and names video as not probed with the fold and its row counts (was: the whole run
    aborted with "view 'video' fold 0 has 0 training and N test rows"); a run where no view can be probed is an
    error naming each."""
    d = make_data(120, seed=3)
    d["present_video"] = d["speakers"] == "spk0"
    path = write_store(tmp_path / "one_speaker_video.h5", d)
    out = tmp_path / "res.json"
    rc = _cli(["--train", str(path), "--folds", "3", "--group", "speaker", "--label", "emotion", "--probe", "linear",
               "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [r["view"] for r in data["rows"]] == ["audio", "fused/concat"]
    folds = group_kfold(d["speakers"][d["y"] >= 0], 3, 0)
    labelled_video = (d["present_video"] & (d["y"] >= 0))[d["y"] >= 0]
    fold, (tr, te) = next((i, f) for i, f in enumerate(folds) if not labelled_video[f[0]].any()
                          or not labelled_video[f[1]].any())
    reason = f"fold {fold} has {int(labelled_video[tr].sum())} training and {int(labelled_video[te].sum())} test rows"
    assert data["not_probed"] == {"video": reason}
    assert f"not probed: video: {reason}" in printed.splitlines()
    line = cli_error("probe", "--train", str(path), "--folds", "3", "--group", "speaker", "--label", "emotion",
                     "--modalities", "video")
    assert line == f"cmer probe: error: no view could be probed: video: {reason}"
