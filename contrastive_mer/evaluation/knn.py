"""kNN probe: exact cosine similarity, temperature-weighted voting.

Features are L2-normalised and searched exactly: blocks of queries times all training rows (a torch matrix
product, so the BLAS torch ships does the work) and the top ``k`` of each row, the search ``faiss.IndexFlatIP``
does (BENCHMARKS.md figure e: the same neighbours, and FAISS's flat search took 3.9x this search's time on the
2-core Intel machine, its bundled BLAS being slower there). Each of
the ``k`` nearest training samples votes with weight ``exp(sim / T)`` (the kNN monitor of InstDisc and
DINO) or 1 (``weighting="uniform"``). Votes are normalised to sum to one per query: class scores for
``multiclass`` (prediction = arg max, ties to the lower class code), per-label scores for ``multilabel``
(label predicted where the score >= 0.5), and a weighted mean for ``regression``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from contrastive_mer.evaluation.metrics import task_metrics
from contrastive_mer.utils import infer_num_classes, l2_normalize

TASKS = ("multiclass", "multilabel", "regression")
BLOCK_ELEMENTS = 1 << 25  # similarities per block (128 MiB of float32)


@dataclass
class KnnProbeConfig:
    """Settings of :func:`knn_probe`: neighbours ``k``, vote ``temperature``, ``weighting`` (``exp`` or
    ``uniform``) and the most queries per similarity block (``batch_size``; fewer when the training set is
    large, so that a block holds at most ``BLOCK_ELEMENTS`` similarities)."""

    task: str = "multiclass"
    k: int = 20
    temperature: float = 0.07
    weighting: str = "exp"
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.weighting not in ("exp", "uniform"):
            raise ValueError(f"unknown weighting {self.weighting!r}; expected exp or uniform")
        if self.weighting == "exp" and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class KnnProbeResult:
    """Predictions as in :class:`~contrastive_mer.evaluation.linear.LinearProbeResult`; ``probabilities`` are
    the normalised votes (``None`` for regression); ``k`` is the number of neighbours actually used."""

    predictions: np.ndarray
    probabilities: np.ndarray | None
    k: int
    metrics: dict[str, Any] | None = None
    n_train: int = 0
    n_test: int = 0


def _normalized(X: np.ndarray, name: str) -> np.ndarray:
    """``X`` checked (2-D, finite) and L2-normalised row-wise."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, features) array, got shape {X.shape}")
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        raise ValueError(f"{name} has non-finite values (first in row {int(np.flatnonzero(~finite)[0])})")
    return l2_normalize(X)


def cosine_neighbours(X_train: np.ndarray, X_test: np.ndarray, k: int,
                      batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar training rows of each test row: ``(similarities, indices)``, both
    ``(M, k)``, most similar first; equal similarities in the lower training index first (which of several
    rows tied at the ``k``-th place is returned is not specified)."""
    train = _normalized(X_train, "X_train")
    test = _normalized(X_test, "X_test")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"X_test has {test.shape[1]} features but X_train has {train.shape[1]}")
    if not 1 <= k <= len(train):
        raise ValueError(f"k must be between 1 and the {len(train)} training rows, got {k}")
    rows = max(1, min(batch_size, BLOCK_ELEMENTS // max(len(train), 1)))
    t_train = torch.from_numpy(train)
    sims = np.empty((len(test), k), dtype=np.float32)
    idx = np.empty((len(test), k), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(test), rows):
            block = torch.from_numpy(test[start:start + rows]) @ t_train.T
            top, where = torch.topk(block, k, dim=1)
            s, i = top.numpy(), where.numpy()
            order = np.lexsort((i, -s), axis=1)  # ties in the lower training index first, as a stable sort
            sims[start:start + rows] = np.take_along_axis(s, order, axis=1)
            idx[start:start + rows] = np.take_along_axis(i, order, axis=1)
    return sims, idx


def vote(similarities: np.ndarray, neighbours: np.ndarray, y_train: np.ndarray, config: KnnProbeConfig,
         *, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Weighted vote of the neighbours' targets; returns ``(predictions, probabilities)``."""
    if config.weighting == "exp":
        # subtracting the row maximum leaves the normalised votes unchanged and avoids overflow
        w = np.exp((similarities - similarities.max(axis=1, keepdims=True)) / config.temperature)
    else:
        w = np.ones_like(similarities)
    w = (w / w.sum(axis=1, keepdims=True)).astype(np.float64)
    targets = y_train[neighbours]  # (M, k) or (M, k, K)
    if config.task == "multiclass":
        c = int(num_classes if num_classes is not None else infer_num_classes(y_train))
        scores = np.zeros((len(w), c))
        np.add.at(scores, (np.arange(len(w))[:, None], targets), w)
        return scores.argmax(axis=1), scores
    if config.task == "multilabel":
        scores = np.einsum("mk,mkl->ml", w, (targets > 0).astype(np.float64))
        return (scores >= 0.5).astype(np.int64), scores
    return (w * targets).sum(axis=1), None


def knn_probe(X_train: np.ndarray, y_train: Any, X_test: np.ndarray, y_test: Any = None,
              config: KnnProbeConfig | None = None, *, groups_train: Any = None,
              num_classes: int | None = None) -> KnnProbeResult:
    """Classify (or regress) each test row from its ``k`` nearest training rows; ``y_test`` only feeds
    ``metrics``. ``k`` is capped at the number of training rows. The shared probe signature
    (:mod:`contrastive_mer.evaluation.probes`); ``groups_train`` is not used (nothing is fitted).

    >>> import numpy as np
    >>> X_train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> result = knn_probe(X_train, [0, 0, 1, 1], np.array([[1.0, 0.2], [0.2, 1.0]]), [0, 1],
    ...                    config=KnnProbeConfig(k=2))
    >>> result.predictions.tolist()
    [0, 1]
    """
    config = config or KnnProbeConfig()
    y = np.asarray(y_train)
    if len(y) != len(X_train):
        raise ValueError(f"y_train has {len(y)} rows but X_train has {len(X_train)}")
    if len(y) == 0:
        raise ValueError("the training set is empty")
    if config.task == "multiclass":
        if y.ndim != 1:
            raise ValueError(f"y_train must be (N,) class codes for a multiclass probe, got shape {y.shape}")
        y = y.astype(np.int64)
        if y.min() < 0:
            raise ValueError(f"y_train has negative class codes (min {y.min()})")
        if num_classes is None:
            num_classes = infer_num_classes(y, y_test)
    elif config.task == "multilabel" and y.ndim != 2:
        raise ValueError(f"y_train must be (N, K) for a multilabel probe, got shape {y.shape}")
    elif config.task == "regression":
        y = y.astype(np.float64).reshape(-1)
    k = min(config.k, len(y))
    sims, idx = cosine_neighbours(X_train, X_test, k, config.batch_size)
    pred, proba = vote(sims, idx, y, config, num_classes=num_classes)
    metrics = None
    if y_test is not None:
        if len(y_test) != len(pred):
            raise ValueError(f"y_test has {len(y_test)} rows but X_test has {len(pred)}")
        metrics = task_metrics(config.task, np.asarray(y_test), pred, num_classes)
    return KnnProbeResult(pred, proba, k, metrics, n_train=len(y), n_test=len(pred))
