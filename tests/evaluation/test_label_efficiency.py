"""Label efficiency: the draws follow the documented rule (a naive numpy reference), are the same clips for every
view, store row order and column, are reproducible under a seed; the scores are the probes fitted on those clips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contrastive_mer.cli.main import main
from contrastive_mer.evaluation import label_efficiency as le
from contrastive_mer.evaluation.label_efficiency import draw_labelled, label_efficiency_stores
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.store.hdf5 import FeatureStore
from tests.evaluation.test_protocol import make_data, write_store

FAST = LinearProbeConfig(weight_decays=(1e-2, 1.0))


def reference_draw(ids, y, k, draw, seed):
    """The rule as the docs state it, written out naively: per class (ascending), ids sorted, permuted by
    default_rng([seed, draw, class]), first min(k, n) taken. Returns the drawn ids as a set."""
    out = set()
    for c in sorted(set(int(v) for v in y if v >= 0)):
        members = sorted(str(i) for i, v in zip(ids, y) if v == c)
        perm = np.random.default_rng([seed, draw, c]).permutation(len(members))
        out |= {members[p] for p in perm[:k]}
    return out


@pytest.mark.parametrize("k, draw, seed", [(1, 0, 0), (3, 2, 7), (50, 1, 0)])
def test_draw_matches_the_naive_reference_in_any_row_order(k, draw, seed):
    rng = np.random.default_rng(5)
    ids = np.array([f"clip{i:03d}" for i in rng.permutation(60)], dtype=object)
    y = rng.integers(-1, 4, 60)
    rows = draw_labelled(ids, y, k, draw=draw, seed=seed)
    assert set(ids[rows]) == reference_draw(ids, y, k, draw, seed)
    assert (y[rows] >= 0).all()
    counts = np.bincount(y[rows], minlength=4)
    assert (counts == np.minimum(k, np.bincount(y[y >= 0], minlength=4))).all()  # short classes: all of them
    order = rng.permutation(60)  # another store of the same clips
    assert set(ids[order][draw_labelled(ids[order], y[order], k, draw=draw, seed=seed)]) == set(ids[rows])


def test_draws_are_nested_in_k_and_vary_with_draw_and_seed():
    ids = np.array([f"c{i}" for i in range(80)], dtype=object)
    y = np.arange(80) % 4
    small = set(ids[draw_labelled(ids, y, 2, draw=0, seed=0)])
    big = set(ids[draw_labelled(ids, y, 6, draw=0, seed=0)])
    assert small < big
    assert set(ids[draw_labelled(ids, y, 6, draw=1, seed=0)]) != big
    assert set(ids[draw_labelled(ids, y, 6, draw=0, seed=1)]) != big
    assert set(ids[draw_labelled(ids, y, 6, draw=0, seed=0)]) == big


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("le")
    return write_store(root / "train.h5", make_data(120, seed=1)), write_store(root / "test.h5", make_data(60, seed=2))


def _spy(monkeypatch):
    seen = []
    real = le.run_probes

    def spy(views, *args, **kwargs):
        seen.append({(v.name, v.fold): sorted(v.ids_train.tolist()) for v in views})
        return real(views, *args, **kwargs)

    monkeypatch.setattr(le, "run_probes", spy)
    return seen


def test_same_clips_for_every_view_and_column_and_reproducible(stores, monkeypatch):
    a, test = stores
    seen = _spy(monkeypatch)
    res_a = label_efficiency_stores(a, test, label="emotion", ks=[2, 5], draws=3, seed=4, linear=FAST)
    draws_a = list(seen)
    seen.clear()
    again = label_efficiency_stores(a, test, label="emotion", ks=[2, 5], draws=3, seed=4, linear=FAST)
    assert seen == draws_a and [r.scores for r in again.rows] == [r.scores for r in res_a.rows]
    with FeatureStore(a) as sa:
        ids, y = np.asarray(sa.ids, dtype=object), sa.labels("emotion")
        present_video = sa.present("video")
    for i, (k, d) in enumerate([(2, 0), (2, 1), (2, 2), (5, 0), (5, 1), (5, 2)]):
        want = reference_draw(ids, y, k, d, 4)
        assert set(draws_a[i][("audio", 0)]) == want
        assert set(draws_a[i][("fused/concat", 0)]) == want
        # video is absent on some clips: the view keeps the drawn clips it has, no other
        assert set(draws_a[i][("video", 0)]) == {c for c in want if present_video[list(ids).index(c)]}
    assert {r.k for r in res_a.rows} == {2, 5} and all(len(r.scores) == 3 for r in res_a.rows)
    # another seed draws other clips
    seen.clear()
    label_efficiency_stores(a, test, label="emotion", ks=[2], draws=1, seed=5, linear=FAST)
    assert seen[0][("audio", 0)] != draws_a[0][("audio", 0)]


def test_columns_share_draws_through_pools(stores, monkeypatch):
    """Two stores of the same clips in another row order (another column) draw the same clips by default."""
    a, test = stores
    with FeatureStore(a) as sa:
        n = len(sa)
        order = np.arange(n)[::-1]
        d = {"y": sa.labels("emotion")[order], "audio": sa.features("audio")[order] * 3,
             "video": sa.features("video")[order], "present_video": sa.present("video")[order],
             "speakers": sa.groups("speaker")[order].astype(str), "valence": sa.labels("valence")[order],
             "multi": sa.labels("tags")[order]}
        ids = np.asarray(sa.ids, dtype=object)[order]
    other = write_store(a.parent / "reordered.h5", d)
    # write_store names rows by position: give the reordered rows their clip ids back through pools
    seen = _spy(monkeypatch)
    label_efficiency_stores(a, test, label="emotion", ks=[3], draws=2, seed=0, linear=FAST)
    first = list(seen)
    seen.clear()
    with FeatureStore(other) as so:
        assert len(so) == n
    import contrastive_mer.evaluation.protocol as protocol

    real_store_views = protocol.store_views

    def renamed(train, *args, **kwargs):  # the reordered store's rows under their true clip ids
        views, info = real_store_views(train, *args, **kwargs)
        if str(train.path) == str(other):
            rename = {f"reordered-{i}": str(ids[i]) for i in range(n)}
            for v in views:
                v.ids_train = np.array([rename[i] for i in v.ids_train], dtype=object)
            info["pools"] = {f: (np.array([rename[i] for i in p], dtype=object), yy)
                             for f, (p, yy) in info["pools"].items()}
        return views, info

    monkeypatch.setattr(protocol, "store_views", renamed)
    label_efficiency_stores(other, test, label="emotion", ks=[3], draws=2, seed=0, linear=FAST)
    assert seen == first


def test_scores_are_the_probe_fitted_on_the_drawn_clips(stores):
    a, test = stores
    res = label_efficiency_stores(a, test, label="emotion", ks=[4], draws=2, views=["audio"], seed=1, linear=FAST)
    with FeatureStore(a) as sa, FeatureStore(test) as st:
        ids, y, X, g = np.asarray(sa.ids, dtype=object), sa.labels("emotion"), sa.features("audio"), \
            sa.groups("speaker")
        yt, Xt = st.labels("emotion"), st.features("audio")
    keep = yt >= 0
    for d in range(2):
        want = reference_draw(ids[y >= 0], y[y >= 0], 4, d, 1)
        rows = np.array([i for i, c in enumerate(ids) if c in want])
        ref = linear_probe(X[rows], y[rows], Xt[keep], yt[keep], FAST, groups_train=g[rows], num_classes=4)
        assert res.rows[0].scores[d] == pytest.approx(ref.metrics["accuracy"])
        assert res.rows[0].n_train[d] == len(rows) == 16


def test_short_class_is_used_whole_and_said(tmp_path):
    d = make_data(60, seed=3)
    d["y"][(d["y"] == 3)] = 0
    d["y"][:2] = 3  # class 3 has two clips
    a = write_store(tmp_path / "a.h5", d)
    res = label_efficiency_stores(a, folds=2, group="speaker", label="emotion", ks=[5], draws=1, views=["audio"],
                                  linear=FAST)
    assert any("angry (" in n and "all of them used" in n for n in res.notes)


def test_cli_probe_labels_per_class(stores, tmp_path, capsys):
    a, test = stores
    out = tmp_path / "le.json"
    assert main(["probe", "--train", str(a), "--test", str(test), "--label", "emotion", "--labels-per-class", "2,4",
                 "--draws", "2", "--probe", "both", "--weight-decays", "0.01,1", "--k", "3",
                 "--modalities", "audio", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "K = 2" in text and "K = 4" in text and "mean ± sd over 2 draws" in text
    saved = json.loads(out.read_text())
    assert saved["ks"] == [2, 4] and saved["draws"] == 2 and "default_rng" in saved["rule"]
    assert {(r["probe"], r["k"]) for r in saved["rows"]} == {("linear", 2), ("knn", 2), ("linear", 4), ("knn", 4)}
