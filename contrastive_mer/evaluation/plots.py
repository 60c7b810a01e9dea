"""Pictures for reports: confusion matrix, 2-D projection of embeddings, training curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: the confusion matrix's colour-bar label: colours are row-normalised, the numbers in the cells are counts
CONFUSION_COLORBAR_LABEL = "share of the true class's clips (row-normalised)"


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str) -> Any:
    """The confusion-matrix figure: rows = true class, columns = predicted; each cell's colour is its share of
    the row (row-normalised, on a labelled colour bar from 0 to 1) and its text the clip count."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    norm = m / np.clip(m.sum(1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(5.8, 4.8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\n(cell: clip count; colour: share of its row)", fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label(CONFUSION_COLORBAR_LABEL)
    fig.tight_layout()
    return fig


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> Path:
    """Save :func:`confusion_figure` to ``path``."""
    plt = _pyplot()
    fig = confusion_figure(matrix, class_names, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of ``x`` (rows centred)."""
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_embedding(x: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: Path, *, title: str) -> Path:
    plt = _pyplot()
    xy = pca_2d(x)
    fig, ax = plt.subplots(figsize=(6.6, 4.8))
    for k, name in enumerate(class_names):
        sel = labels == k
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, label=name, alpha=0.8)
    # right of the axes: inside, it covered a cluster of points
    ax.legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


_CURVES = {"train/loss_epoch": "training", "val/loss": "validation"}


def history_figure(history: list[dict], keys: Sequence[str] = tuple(_CURVES)) -> Any:
    """Loss per epoch (1-based, as the log lines count; integer ticks), and the online probe's fused accuracies
    on a right-hand axis when the run had one (``monitor.online_probe``)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.4))
    for key in keys:
        pts = [(h["epoch"] + 1, h[key]) for h in history if key in h]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=_CURVES.get(key, key))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("pairwise InfoNCE loss")
    handles, labels = ax.get_legend_handles_labels()
    probe = [k for k in ("online_probe/linear_acc", "online_probe/knn_acc") if any(k in h for h in history)]
    if probe:
        right = ax.twinx()
        for key, style in zip(probe, ("s--", "^--")):
            pts = [(h["epoch"] + 1, 100 * h[key]) for h in history if key in h]
            right.plot(*zip(*pts), style, color="tab:green" if "linear" in key else "tab:olive",
                       label=f"online probe, {key.split('/')[1].split('_')[0]} (%)")
        right.set_ylabel("online-probe accuracy (%)")
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    # below the axes: inside, it hid points (the online probe's first epoch sat under it)
    ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.set_title("pretraining loss")
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], path: Path, keys: Sequence[str] = tuple(_CURVES)) -> Path:
    """Save :func:`history_figure` to ``path``."""
    plt = _pyplot()
    fig = history_figure(history, keys)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _raw_counterpart(view: str) -> str:
    """The raw-input view a pretrained view is compared with: ``fused/<mode>[@g]`` -> ``raw/fused[@g]`` (all raw
    inputs side by side), ``<m>[@g]`` -> ``raw/<m>[@g]``."""
    base, at, group = view.partition("@")
    return ("raw/fused" if base.startswith("fused/") else f"raw/{base}") + at + group


def plot_label_efficiency(columns: dict[str, Any], views: Sequence[str], path: Path,
                          probe: str = "linear") -> dict[str, dict[str, dict[str, list[float]]]]:
    """Accuracy (the results' metric) against labelled clips per class (log x), one panel per view in ``views``,
    one line per column with a mean ± sd band over draws. ``columns``: column name ->
    :class:`~contrastive_mer.evaluation.label_efficiency.LabelEfficiencyResults`; a raw-input column's view is
    the raw counterpart of the view (``raw/fused`` for a fused view). Views no column has are left out.
    Returns the plotted numbers, ``{view: {column: {"ks", "mean", "std"}}}`` (metric as stored, not in %)."""
    from contrastive_mer.evaluation.label_efficiency import curve

    plotted: dict[str, dict[str, dict[str, list[float]]]] = {}
    for view in views:
        for column, res in columns.items():
            name = view if view in res.views() else _raw_counterpart(view)
            if name not in res.views():
                continue
            ks, mean, sd = curve(res, name, probe)
            if len(ks):
                plotted.setdefault(view, {})[column] = {"ks": ks.tolist(), "mean": mean.tolist(),
                                                        "std": sd.tolist()}
    if not plotted:
        return plotted
    plt = _pyplot()
    first = next(iter(columns.values()))
    scale = 1.0 if first.task == "regression" else 100.0
    fig, axes = plt.subplots(1, len(plotted), figsize=(5.0 * len(plotted), 4.2), squeeze=False)
    for ax, (view, lines) in zip(axes[0], plotted.items()):
        for column, c in lines.items():
            ks, mean, sd = np.array(c["ks"]), scale * np.array(c["mean"]), scale * np.array(c["std"])
            ax.plot(ks, mean, marker="o", label=column.replace("_", " "))
            ax.fill_between(ks, mean - sd, mean + sd, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(sorted({k for c in lines.values() for k in c["ks"]}))
        ax.get_xaxis().set_major_formatter(_plain_ticks())
        ax.set_xlabel("labelled clips per class")
        ax.set_ylabel(f"{first.metric}{' (%)' if scale == 100.0 else ''}, {probe} probe")
        ax.set_title(view, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{first.label}: mean ± sd over {first.draws} draws", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return plotted


def _plain_ticks() -> Any:
    from matplotlib.ticker import ScalarFormatter

    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    return fmt
