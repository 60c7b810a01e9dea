"""MLP probe: the official code's "linear classifier" (``models/LinearClassifier.py``: ``Linear(D, 512) -> ReLU
-> Linear(512, C)`` on the concatenated pre-head features), trained on frozen standardised features.

Mini-batch AdamW with cross-entropy (``multiclass``), per-label binary cross-entropy
(``multilabel``) or half squared error (``regression``), a fixed number of epochs and weight decay (no search:
the official classifier has none), seeded. Beside :mod:`contrastive_mer.evaluation.linear`, which stays the
protocol's default: a 2-layer probe measures what a small non-linear read-out can get from the features, which
is not the same question as linear separability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from contrastive_mer.data.normalization import standardise
from contrastive_mer.evaluation.linear import TASKS, _as_float, _loss, _outputs_to_predictions, _targets, _threads_for
from contrastive_mer.evaluation.metrics import task_metrics
from contrastive_mer.utils import infer_num_classes


@dataclass
class MLPProbeConfig:
    """Settings of :func:`mlp_probe`: hidden width (official 512), AdamW ``lr``/``weight_decay``, ``epochs`` of
    mini-batches of ``batch_size``, ``seed`` (initialisation and shuffling), ``task`` as the linear probe's."""

    task: str = "multiclass"
    hidden_dim: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 100
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.hidden_dim < 1 or self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"mlp probe: hidden_dim, epochs, batch_size must be >= 1, lr > 0, weight_decay >= 0; "
                             f"got {self}")


class MLPProbeModel(nn.Module):
    """Standardisation (training statistics) -> ``Linear -> ReLU -> Linear``."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden_dim: int, n_out: int, *, task: str):
        super().__init__()
        self.task = task
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.hidden = nn.Linear(mean.shape[-1], hidden_dim)
        self.out = nn.Linear(hidden_dim, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(standardise(x, self.mean, self.std))))

    def predict(self, X: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """``(predictions, probabilities)`` as :meth:`LinearProbeModel.predict`."""
        with torch.no_grad():
            return _outputs_to_predictions(self(_as_float(X, "X")), self.task)


@dataclass
class MLPProbeResult:
    """What :func:`mlp_probe` returns (``metrics`` only when test targets were given)."""

    predictions: np.ndarray
    probabilities: np.ndarray | None
    model: MLPProbeModel
    metrics: dict[str, Any] | None = None
    n_train: int = 0
    n_test: int = 0


def fit_mlp_probe(X: np.ndarray | torch.Tensor, y: Any, config: MLPProbeConfig | None = None,
                  num_classes: int | None = None) -> MLPProbeModel:
    """Train the 2-layer probe on ``(X, y)`` (see :class:`MLPProbeConfig`)."""
    config = config or MLPProbeConfig()
    Xt = _as_float(X, "X_train")
    target = _targets(y, config.task, len(Xt), "y_train", num_classes=num_classes)
    n_out = int(num_classes or infer_num_classes(target)) if config.task == "multiclass" else target.shape[1]
    mean, std = Xt.mean(0), Xt.std(0, unbiased=False)
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = MLPProbeModel(mean, std, config.hidden_dim, n_out, task=config.task)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    with _threads_for(config.batch_size * max(Xt.shape[1], config.hidden_dim)):  # small steps: one thread
        for _ in range(config.epochs):
            order = torch.randperm(len(Xt), generator=gen)
            for start in range(0, len(Xt), config.batch_size):
                idx = order[start:start + config.batch_size]
                opt.zero_grad()
                _loss(model(Xt[idx]), target[idx], config.task).backward()
                opt.step()
    return model.eval()


def mlp_probe(X_train: np.ndarray | torch.Tensor, y_train: Any, X_test: np.ndarray | torch.Tensor,
              y_test: Any = None, config: MLPProbeConfig | None = None, *, groups_train: Any = None,
              num_classes: int | None = None) -> MLPProbeResult:
    """Fit on the training set, predict the test set; ``y_test`` only scores the predictions. The shared probe
    signature (:mod:`contrastive_mer.evaluation.probes`); ``groups_train`` is not used (no validation split)."""
    config = config or MLPProbeConfig()
    if config.task == "multiclass" and num_classes is None:
        num_classes = infer_num_classes(y_train, y_test)
    model = fit_mlp_probe(X_train, y_train, config, num_classes)
    Xte = _as_float(X_test, "X_test")
    if Xte.shape[1] != model.mean.shape[-1]:
        raise ValueError(f"X_test has {Xte.shape[1]} features but X_train has {model.mean.shape[-1]}")
    pred, proba = model.predict(Xte)
    metrics = None
    if y_test is not None:
        _targets(y_test, config.task, len(Xte), "y_test", num_classes=num_classes)
        metrics = task_metrics(config.task, np.asarray(y_test), pred, num_classes)
    return MLPProbeResult(pred, proba, model, metrics, n_train=len(np.asarray(y_train)), n_test=len(Xte))
