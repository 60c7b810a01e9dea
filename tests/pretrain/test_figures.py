"""Training pictures: UMAP maps when umap-learn is installed (PCA otherwise, and on request), the global NumPy
random state untouched, and the loss plot's epochs counted 1, 2, 3 on integer ticks."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from contrastive_mer.config import ConfigError
from contrastive_mer.evaluation.plots import history_figure
from contrastive_mer.experiment import load_config
from contrastive_mer.pretrain.figures import map_2d, map_figure, pca_2d
from tests.conftest import DEMO, TINY

HAS_UMAP = getattr(importlib.util.find_spec("umap"), "origin", None) is not None


def _clusters(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), n // 3)
    centres = rng.normal(size=(3, 16)) * 6
    return (centres[labels] + rng.normal(size=(n, 16))).astype(np.float32), labels


def test_pca_fallback_is_pca(monkeypatch):
    x, _ = _clusters()
    xy, method = map_2d(x, "pca")
    assert method == "PCA" and np.allclose(xy, pca_2d(x))
    monkeypatch.setattr("contrastive_mer.pretrain.figures.umap_available", lambda: False)
    xy, method = map_2d(x, "auto")  # umap-learn absent: today's behaviour
    assert method == "PCA" and np.allclose(xy, pca_2d(x))
    assert map_2d(x[:5], "auto")[1] == "PCA"  # too few rows for a neighbour graph
    with pytest.raises(ValueError, match="map method"):
        map_2d(x, "tsne")


@pytest.mark.skipif(not HAS_UMAP, reason="umap-learn not installed (pip install 'contrastive-mer[viz]')")
def test_umap_map_separates_clusters_and_keeps_the_global_random_state():
    x, labels = _clusters()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    xy, method = map_2d(x, "auto", seed=0)
    assert method == "UMAP" and xy.shape == (60, 2) and np.isfinite(xy).all()
    assert np.array_equal(np.random.get_state()[1], before)  # training's random stream is not advanced
    # every clip's nearest neighbour on the map is from its own cluster
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    again, _ = map_2d(x, "umap", seed=0)
    assert np.allclose(xy, again)  # seeded


def test_umap_request_without_umap_learn_is_refused(monkeypatch):
    if HAS_UMAP:
        cfg = load_config(DEMO, TINY + ["monitor.embedding_map=umap"])
        assert cfg.monitor.embedding_map == "umap"
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    with pytest.raises(ConfigError, match="umap-learn"):
        load_config(DEMO, TINY + ["monitor.embedding_map=umap"])
    with pytest.raises(ConfigError, match="monitor.embedding_map"):
        load_config(DEMO, TINY + ["monitor.embedding_map=tsne"])


def test_map_figure_names_the_method_and_keeps_legends_outside():
    x, labels = _clusters()
    cols = {"emotion": [f"e{v}" for v in labels], "speaker": [f"s{v % 2}" for v in range(len(x))]}
    fig = map_figure({"fused": (pca_2d(x), cols)}, epoch=3, method="PCA")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["fused by emotion (PCA, epoch 3, 60 clips)", "fused by speaker (PCA, epoch 3, 60 clips)"]
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None and legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1


def test_loss_plot_counts_epochs_from_one_on_integer_ticks():
    history = [{"epoch": e, "train/loss_epoch": 3 - 0.1 * e, "val/loss": 3.1 - 0.05 * e} for e in range(3)]
    fig = history_figure(history)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert sorted(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", "validation"]
    probed = [dict(h, **{"online_probe/linear_acc": 0.4 + 0.1 * h["epoch"]}) for h in history]
    fig = history_figure(probed)
    assert len(fig.axes) == 2
    assert "online probe, linear (%)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert list(fig.axes[1].lines[0].get_ydata()) == pytest.approx([40, 50, 60])
