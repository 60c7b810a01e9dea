"""Retrieval ranks ties pessimistically, the adamw probe reaches the L-BFGS / scikit-learn optimum and is set from
``cmer probe``, Acc-2 in both conventions, the probe table's sizes on one footing, the confusion colour bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from contrastive_mer.cli import main as cli_main
from contrastive_mer.cli import probe as cli_probe
from contrastive_mer.evaluation.linear import LinearProbeConfig, LinearProbeModel, fit_linear_probe
from contrastive_mer.evaluation.metrics import regression_metrics
from contrastive_mer.evaluation.plots import CONFUSION_COLORBAR_LABEL, confusion_figure
from contrastive_mer.evaluation.protocol import format_table, kfold_views, run_probes
from contrastive_mer.evaluation.retrieval import cross_modal_retrieval, retrieval_ranks
from tests.store.test_index import make_store


# ------------------------------------------------------------------------------------------ retrieval
def naive_pessimistic_ranks(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per query, how many gallery rows are at least as similar as its partner (itself included), by loops."""
    ranks = []
    for i in range(len(q)):
        sims = [float(np.dot(q[i], g[j]) / (np.linalg.norm(q[i]) * np.linalg.norm(g[j]))) for j in range(len(g))]
        ranks.append(sum(s >= sims[i] - 1e-9 for s in sims))
    return np.array(ranks)


def test_collapsed_embeddings_score_chance_not_perfect() -> None:
    n = 50
    same = np.ones((n, 8), dtype=np.float32)
    assert retrieval_ranks(same, same).tolist() == [n] * n
    res = cross_modal_retrieval({"audio": same, "video": same * 3})["audio-video"]
    assert res["R@1"] == 0.0 and res["R@10"] == 0.0 and res["median_rank"] == n and res["mean_rank"] == n
    zeros = np.zeros((n, 4))  # all-zero projections: every similarity is 0, a tie
    assert retrieval_ranks(zeros, zeros).tolist() == [n] * n


def test_ties_count_against_the_query_like_the_naive_reference() -> None:
    rng = np.random.default_rng(0)
    g = rng.normal(size=(60, 16))
    g[10:20] = g[0]  # eleven identical gallery rows: their queries tie with ten others
    g[30:33] = g[30] * np.array([[1.0], [2.0], [0.5]])  # same direction, other lengths: cosine ties too
    q = g + rng.normal(size=g.shape) * 0.05
    ref = naive_pessimistic_ranks(q, g)
    np.testing.assert_array_equal(retrieval_ranks(q, g), ref)
    np.testing.assert_array_equal(retrieval_ranks(q, g, max_block_elements=130), ref)  # blocks of 2 rows
    assert (ref[[0, *range(10, 20)]] >= 11).all() and (ref[30:33] >= 3).all()
    distinct = np.setdiff1d(np.arange(60), [0, *range(10, 20), 30, 31, 32])
    assert (ref[distinct] == 1).all()


# ------------------------------------------------------------------------------------------ adamw probe
def _objective(model: LinearProbeModel, X: np.ndarray, y: np.ndarray, wd: float) -> float:
    out = model.decision_function(X)
    return float(F.cross_entropy(out, torch.as_tensor(y)) + 0.5 * wd * (model.weight ** 2).sum())


@pytest.mark.parametrize("wd", [1e-2, 1e-3])
def test_adamw_reaches_the_lbfgs_and_sklearn_optimum(wd: float) -> None:
    rng = np.random.default_rng(0)
    n, d, c = 400, 32, 4
    y = rng.integers(0, c, n)
    X = rng.normal(size=(c, d))[y] * 0.5 + rng.normal(size=(n, d))
    lbfgs = _objective(fit_linear_probe(X, y, config=LinearProbeConfig(weight_decays=(wd,)))[0], X, y, wd)
    adamw_model = fit_linear_probe(X, y, config=LinearProbeConfig(weight_decays=(wd,), solver="adamw"))[0]
    adamw = _objective(adamw_model, X, y, wd)
    # scikit-learn's optimum of the same objective: C = 1 / (wd * n) on the standardised features
    Xs = (X - X.mean(0)) / X.std(0)
    sk = LogisticRegression(C=1 / (wd * n), tol=1e-10, max_iter=10_000).fit(Xs, y)
    sk_model = LinearProbeModel("multiclass", torch.zeros(d), torch.ones(d),
                                torch.tensor(sk.coef_.T, dtype=torch.float32),
                                torch.tensor(sk.intercept_, dtype=torch.float32))
    reference = _objective(sk_model, Xs, y, wd)
    assert lbfgs == pytest.approx(reference, rel=1e-3)
    assert adamw <= reference * 1.01
    old = LinearProbeConfig(weight_decays=(wd,), solver="adamw", lr=1e-3, epochs=50, batch_size=512)
    assert _objective(fit_linear_probe(X, y, config=old)[0], X, y, wd) > reference * 1.5  # the old defaults


def test_cmer_probe_sets_the_adamw_solver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_store(tmp_path / "f.h5")
    argv = ["probe", "--train", str(tmp_path / "f.h5"), "--test", str(tmp_path / "f.h5"), "--label", "emotion",
            "--probe", "linear", "--modalities", "audio", "--weight-decays", "0.1"]
    parser = cli_main.build_parser(only="probe")
    args = parser.parse_args([*argv, "--solver", "adamw", "--lr", "0.03", "--epochs", "7", "--batch-size", "16"])
    cfg = cli_probe._linear_config(args)
    assert (cfg.solver, cfg.lr, cfg.epochs, cfg.batch_size, cfg.weight_decays) == ("adamw", 0.03, 7, 16, (0.1,))
    assert cli_main.main([*argv, "--solver", "adamw", "--epochs", "5"]) == 0
    assert "audio" in capsys.readouterr().out
    assert cli_main.main([*argv, "--lr", "0.1"]) == 2
    assert "--lr sets the adamw solver: add --solver adamw" in capsys.readouterr().err
    assert cli_main.main([*argv, "--solver", "adamw", "--epochs", "0"]) == 2
    assert "epochs >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ Acc-2
def test_acc2_in_both_conventions_against_sklearn() -> None:
    rng = np.random.default_rng(3)
    t = np.round(rng.uniform(-3, 3, 300) * 3) / 3
    t[::7] = 0.0  # MOSI has many exact zeros
    p = t + rng.normal(size=300) * 0.8
    p[::11] = 0.0
    m = regression_metrics(t, p)
    nz = t != 0
    assert m["acc2"] == pytest.approx(accuracy_score(t[nz] > 0, p[nz] > 0))
    assert m["f1_acc2"] == pytest.approx(f1_score(t[nz] > 0, p[nz] > 0, average="weighted"))
    assert m["acc2_has0"] == pytest.approx(accuracy_score(t >= 0, p >= 0))
    assert m["f1_acc2_has0"] == pytest.approx(f1_score(t >= 0, p >= 0, average="weighted"))
    assert m["acc2"] != m["acc2_has0"]
    zeros = regression_metrics(np.zeros(4), np.array([1.0, -1.0, 0.0, 2.0]))
    assert np.isnan(zeros["acc2"]) and zeros["acc2_has0"] == pytest.approx(0.75)


# ------------------------------------------------------------------------------------------ table, picture
def test_probe_table_sizes_are_both_per_fold_with_folds() -> None:
    rng = np.random.default_rng(0)
    n = 90
    X, y, groups = rng.normal(size=(n, 4)), rng.integers(0, 3, n), np.repeat(np.arange(9), 10)
    views = kfold_views("v", X, y, groups, k=3)
    results = run_probes(views, "multiclass", probes=("knn",), setup={"folds": 3, "group": "speaker"})
    header, row = format_table(results).splitlines()[2:5:2]
    assert header.split()[2:4] == ["n_train/fold", "n_test/fold"]
    assert row.split()[2:4] == ["60", "30"]  # 3 folds of 3 speakers: 60 training and 30 test rows each
    single = run_probes(views[:1], "multiclass", probes=("knn",))
    header, row = format_table(single).splitlines()[2:5:2]
    assert header.split()[2:4] == ["n_train", "n_test"] and row.split()[2:4] == ["60", "30"]


def test_regression_table_names_both_acc2_conventions() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] + rng.normal(size=60) * 0.1
    views = kfold_views("v", X, y, np.repeat(np.arange(6), 10), k=2)
    table = format_table(run_probes(views, "regression", probes=("knn",), setup={"folds": 2, "group": "g"}))
    assert "acc2_non0" in table and "acc2_has0" in table


def test_confusion_colour_bar_is_labelled() -> None:
    import matplotlib.pyplot as plt

    fig = confusion_figure(np.array([[5, 1], [2, 8]]), ["calm", "sad"], "test")
    try:
        bar_axes = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(bar_axes) == 1 and bar_axes[0].get_ylabel() == CONFUSION_COLORBAR_LABEL
        texts = sorted(t.get_text() for t in fig.axes[0].texts)
        assert texts == ["1", "2", "5", "8"]  # the cells show counts
    finally:
        plt.close(fig)
