"""What the embeddings look like while training: histograms, a 2-D map and a similarity matrix per epoch.

:class:`EmbeddingFiguresCallback` re-encodes up to ``max_clips`` validation clips at the end of each validation
batch (no gradients), then at the epoch's end logs to TensorBoard a histogram of each modality's projections,
a 2-D map of the validation projections per modality and fused (the mean of the present modalities'
projections; UMAP through umap-learn when it is installed, the ``viz`` extra, else PCA: see :func:`map_2d`),
coloured by speaker and by the first label (labels only colour the picture: they never reach the
loss or the checkpoint choice), and the cross-modal cosine similarity matrix of the first validation batch
(a trained model shows a bright diagonal). The last epoch's pictures are also saved under ``RUN/figures/``.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


def pca_2d(x: np.ndarray) -> np.ndarray:
    """The first two principal-component scores of the rows of ``x`` (zero-padded below two dimensions)."""
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))) if out.shape[1] < 2 else out


MAP_METHODS = ("auto", "umap", "pca")


def umap_available() -> bool:
    """Whether umap-learn is installed (``pip install 'contrastive-mer[viz]'``); a left-over ``umap`` folder
    without the package (a namespace package, no origin) does not count."""
    spec = importlib.util.find_spec("umap")
    return spec is not None and spec.origin is not None


def map_2d(x: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """A 2-D map of the rows of ``x`` and the method's name: UMAP (cosine metric, seeded) for ``umap``, and for
    ``auto`` when umap-learn is installed; PCA otherwise and below 10 rows (too few for a neighbour graph).
    The global NumPy random state is left as it was (training draws from it)."""
    if method not in MAP_METHODS:
        raise ValueError(f"unknown map method {method!r}; expected one of {', '.join(MAP_METHODS)}")
    if method != "pca" and len(x) >= 10 and umap_available():
        try:
            from umap import UMAP
        except ImportError:  # found but broken (e.g. a numba that does not fit this NumPy): the PCA map
            return pca_2d(x), "PCA"
        state = np.random.get_state()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state", numba notices
                reducer = UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), metric="cosine",
                                    random_state=seed, init="random" if len(x) < 32 else "spectral")
                return np.asarray(reducer.fit_transform(np.asarray(x, dtype=np.float32))), "UMAP"
        finally:
            np.random.set_state(state)
    return pca_2d(x), "PCA"


def _codes(values: list[str]) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(values))
    return np.array([names.index(v) for v in values]), names


def map_figure(maps: dict[str, tuple[np.ndarray, dict[str, list[str]]]], epoch: int, method: str = "PCA") -> Any:
    """One row per view (modality or fused), one column per colouring (speaker, label); the legend (up to 12
    values) sits right of each panel so it hides no point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colourings = sorted({c for _, cols in maps.values() for c in cols}) or ["none"]
    fig, axes = plt.subplots(len(maps), len(colourings), figsize=(4.6 * len(colourings), 3.2 * len(maps)),
                             squeeze=False)
    for r, (view, (xy, cols)) in enumerate(maps.items()):
        for c, name in enumerate(colourings):
            ax = axes[r][c]
            codes, names = _codes(cols[name]) if name in cols else (np.zeros(len(xy), int), [""])
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=codes, cmap="tab10" if len(names) <= 10 else "tab20", s=8,
                            vmin=0, vmax=max(len(names) - 1, 1))
            ax.set_title(f"{view} by {name} ({method}, epoch {epoch}, {len(xy)} clips)", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
            if 1 < len(names) <= 12:
                handles = [plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=n)
                           for i, n in enumerate(names)]
                ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                          markerscale=0.8, frameon=False)
    fig.tight_layout()
    return fig


def similarity_figure(sim: np.ndarray, a: str, b: str, epoch: int) -> Any:
    """The cosine similarity matrix of one batch (rows: ``a`` clips, columns: the same clips' ``b``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    im = ax.imshow(sim, vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xlabel(f"{b} of clip j"), ax.set_ylabel(f"{a} of clip i")
    ax.set_title(f"{a} vs {b}, one validation batch, epoch {epoch}\n"
                 "diagonal = the same clip (bright once aligned)", fontsize=8)
    fig.colorbar(im, ax=ax, label="cosine similarity")
    fig.tight_layout()
    return fig


class EmbeddingFiguresCallback(Callback):
    """See the module docstring. ``group`` colours by that group (e.g. speaker); labels by the first label."""

    def __init__(self, run_dir: Path, group: str = "speaker", *, max_clips: int = 512, method: str = "auto",
                 seed: int = 0):
        self.dir, self.group, self.max_clips = Path(run_dir) / "figures", group, max_clips
        self.method, self.seed = method, seed
        self._reset()

    def _reset(self) -> None:
        self.proj: dict[str, list[np.ndarray]] = {}
        self.present: dict[str, list[np.ndarray]] = {}
        self.cols: dict[str, list[str]] = {}
        self.sim: tuple[np.ndarray, str, str] | None = None
        self.count = 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._reset()

    def on_validation_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.count >= self.max_clips:
            return
        with torch.no_grad():
            _, proj = module(batch)
        for m, p in proj.items():
            self.proj.setdefault(m, []).append(p.float().cpu().numpy())
            self.present.setdefault(m, []).append(batch.present[m].cpu().numpy().astype(bool))
        n = len(batch.ids)
        self.cols.setdefault(self.group, []).extend(str(g) for g in batch.groups.get(self.group, ["?"] * n))
        if batch.labels:
            name = sorted(batch.labels)[0]
            values = batch.labels[name].cpu().numpy()
            adapter = getattr(getattr(trainer, "datamodule", None), "adapter", None)  # set by Lightning's fit
            classes = getattr(adapter, "label_names", {}).get(name) or []
            self.cols.setdefault(name, []).extend(
                "multi" if np.ndim(v) else classes[int(v)] if 0 <= int(v) < len(classes) else str(v) for v in values)
        if self.sim is None:
            mods = [m for m in proj if bool(batch.present[m].any())]
            if len(mods) >= 2:
                a, b = mods[:2]
                both = (batch.present[a] & batch.present[b]).cpu().numpy().astype(bool)
                pa, pb = proj[a].float().cpu().numpy()[both], proj[b].float().cpu().numpy()[both]
                if len(pa) >= 2:
                    self.sim = (pa @ pb.T, a, b)
        self.count += n

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.proj:
            return
        import matplotlib.pyplot as plt

        epoch = trainer.current_epoch
        writer = getattr(trainer.logger, "experiment", None)
        proj = {m: np.concatenate(v) for m, v in self.proj.items()}
        present = {m: np.concatenate(v) for m, v in self.present.items()}
        any_present = np.any(np.stack(list(present.values())), axis=0)
        total = sum(np.where(present[m][:, None], proj[m], 0.0) for m in proj)
        fused = total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)
        views = {**{m: (proj[m], present[m]) for m in proj}, "fused": (fused, any_present)}
        maps, methods = {}, set()
        for view, (x, rows) in views.items():
            if rows.sum() >= 3:
                xy, used = map_2d(x[rows], self.method, self.seed)
                methods.add(used)
                maps[view] = (xy, {k: [c for c, r in zip(v, rows) if r] for k, v in self.cols.items()})
            if writer is not None and hasattr(writer, "add_histogram") and rows.any():
                writer.add_histogram(f"embeddings/{view}", x[rows], epoch)
        self.dir.mkdir(parents=True, exist_ok=True)
        figures = {}
        if maps:
            figures["embedding_map"] = map_figure(maps, epoch + 1, "/".join(sorted(methods)))  # 1-based epochs
        if self.sim is not None:
            figures["similarity"] = similarity_figure(*self.sim, epoch + 1)
        for name, fig in figures.items():
            if writer is not None and hasattr(writer, "add_figure"):
                writer.add_figure(f"embeddings/{name}", fig, epoch, close=False)
            fig.savefig(self.dir / f"{name}.png", dpi=110)
            plt.close(fig)
