"""A modality missing at test time: only the test clips that lack it, or all of them with it masked out and the
fusion recomputed; the probes are trained on the training clips as they are. And no test label reaches the
probe's selection (weight decay) or the label-efficiency draws."""

from __future__ import annotations

import numpy as np

from contrastive_mer.cli.main import main
from contrastive_mer.evaluation.label_efficiency import label_efficiency_stores
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.evaluation.protocol import probe_stores, store_views
from contrastive_mer.store.hdf5 import FeatureStore
from tests.evaluation.test_protocol import make_data, write_store

FAST = LinearProbeConfig(weight_decays=(1e-2, 1.0, 100.0))


def _by_name(views):
    return {v.name: v for v in views}


def test_only_test_clips_that_lack_the_modality(tmp_path):
    train, test = make_data(120, seed=1), make_data(80, seed=2)  # video absent on ~30% of the clips
    tr, te = write_store(tmp_path / "train.h5", train), write_store(tmp_path / "test.h5", test)
    with FeatureStore(tr) as a, FeatureStore(te) as b:
        views, info = store_views(a, b, "emotion", missing="video")
        full, _ = store_views(a, b, "emotion")
    lacking = ~test["present_video"] & (test["y"] >= 0)
    assert 0 < lacking.sum() < len(lacking)
    got, ref = _by_name(views), _by_name(full)
    assert set(got) == {"audio", "fused/concat"}  # the video view has no test clip left
    for name in got:
        np.testing.assert_array_equal(got[name].y_test, test["y"][lacking])
        np.testing.assert_array_equal(got[name].X_train, ref[name].X_train)  # training clips as they are
    np.testing.assert_array_equal(got["fused/concat"].X_test[:, 16:], 0)  # stored fusion without video
    np.testing.assert_array_equal(got["audio"].X_test, test["audio"][lacking])
    m = info["setup"]["missing"]
    assert m["mode"] == "lacking" and m["clips"] == lacking.sum() and m["dropped_views"] == ["video"]


def test_masked_when_no_test_clip_lacks_it(tmp_path):
    train, test = make_data(120, seed=1), make_data(60, seed=2)
    test["present_video"][:] = True
    test["video"] = np.random.default_rng(0).normal(size=test["video"].shape).astype(np.float32)
    tr, te = write_store(tmp_path / "train.h5", train), write_store(tmp_path / "test.h5", test)
    res = probe_stores(tr, te, label="emotion", views=["fused/concat"], probes=("linear",), linear=FAST,
                       missing="video")
    m = res.setup["missing"]
    labelled = (test["y"] >= 0).sum()
    assert m["mode"] == "masked" and m["clips"] == labelled and "masked out" in m["text"]
    with FeatureStore(tr) as a, FeatureStore(te) as b:
        views, _ = store_views(a, b, "emotion", views=["fused/concat"], missing="video")
    keep = test["y"] >= 0
    want = np.concatenate([test["audio"][keep], np.zeros((keep.sum(), 8), np.float32)], 1)  # concat, video zeros
    np.testing.assert_array_equal(views[0].X_test, want)


def test_folds_test_only_lacking_clips(tmp_path):
    d = make_data(150, seed=4)
    st = write_store(tmp_path / "one.h5", d)
    with FeatureStore(st) as s:
        views, info = store_views(s, None, "emotion", folds=3, group="speaker", missing="video")
    lacking = ~d["present_video"] & (d["y"] >= 0)
    audio = [v for v in views if v.name == "audio"]
    assert sum(len(v.y_test) for v in audio) == lacking.sum() == info["setup"]["missing"]["clips"]
    rows = {tuple(x) for v in audio for x in v.X_test}
    assert rows == {tuple(x) for x in d["audio"][lacking]}


def test_cli_probe_missing_says_what_it_did(tmp_path, capsys):
    tr = write_store(tmp_path / "train.h5", make_data(100, seed=1))
    te = write_store(tmp_path / "test.h5", make_data(60, seed=2))
    assert main(["probe", "--train", str(tr), "--test", str(te), "--label", "emotion", "--missing", "video",
                 "--probe", "linear", "--weight-decays", "0.01,1"]) == 0
    out = capsys.readouterr().out
    assert "missing video: tested only on the" in out and "lack video" in out


def test_test_labels_never_reach_probe_selection_or_draws(tmp_path):
    train, test = make_data(120, seed=1), make_data(60, seed=2)
    poisoned = dict(test)
    poisoned["y"] = np.where(test["y"] >= 0, (test["y"] + 1 + np.arange(60) % 3) % 4, -1)  # every label wrong
    tr = write_store(tmp_path / "train.h5", train)
    clean, bad = write_store(tmp_path / "c" / "test.h5", test), write_store(tmp_path / "p" / "test.h5", poisoned)
    with FeatureStore(tr) as a, FeatureStore(clean) as c, FeatureStore(bad) as p:
        for vc, vp in zip(store_views(a, c, "emotion")[0], store_views(a, p, "emotion")[0]):
            fit_c = linear_probe(vc.X_train, vc.y_train, vc.X_test, vc.y_test, FAST, groups_train=vc.groups_train,
                                 num_classes=4)
            fit_p = linear_probe(vp.X_train, vp.y_train, vp.X_test, vp.y_test, FAST, groups_train=vp.groups_train,
                                 num_classes=4)
            assert fit_c.weight_decay == fit_p.weight_decay and fit_c.val_scores == fit_p.val_scores
            np.testing.assert_array_equal(fit_c.predictions, fit_p.predictions)
            assert fit_c.metrics["accuracy"] != fit_p.metrics["accuracy"]
    res_c = probe_stores(tr, clean, label="emotion", probes=("linear",), linear=FAST)
    res_p = probe_stores(tr, bad, label="emotion", probes=("linear",), linear=FAST)
    assert [r.details["weight_decay"] for r in res_c.rows] == [r.details["weight_decay"] for r in res_p.rows]
    # confusion matrices' column sums are the prediction counts: identical
    for rc, rp in zip(res_c.rows, res_p.rows):
        np.testing.assert_array_equal(np.asarray(rc.details["confusion_matrix"]).sum(0),
                                      np.asarray(rp.details["confusion_matrix"]).sum(0))
    le_c = label_efficiency_stores(tr, clean, label="emotion", ks=[3], draws=2, linear=FAST)
    le_p = label_efficiency_stores(tr, bad, label="emotion", ks=[3], draws=2, linear=FAST)
    assert [r.n_train for r in le_c.rows] == [r.n_train for r in le_p.rows]
