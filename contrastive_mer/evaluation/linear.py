"""Linear probe: a regularised linear model on frozen features, with the weight decay chosen on a
group-disjoint validation split of the training set (never on the test set), then refit on all of it.

The objective is ``mean_loss(X W + b, y) + wd / 2 * ||W||^2`` on standardised features (bias not
penalised): cross-entropy for ``multiclass``, per-label binary cross-entropy summed over labels for
``multilabel``, half squared error for ``regression``. For ``multiclass`` this is exactly scikit-learn's
``LogisticRegression(C=1 / (wd * n))``. The default solver is full-batch L-BFGS with a strong-Wolfe line
search, warm-started along the weight-decay grid from the strongest to the weakest value.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from contrastive_mer.data.normalization import standardise
from contrastive_mer.data.splits import group_train_val_split
from contrastive_mer.evaluation.metrics import primary_score, task_metrics
from contrastive_mer.utils import infer_num_classes

TASKS = ("multiclass", "multilabel", "regression")


@dataclass
class LinearProbeConfig:
    """Settings of :func:`linear_probe`.

    Attributes:
        task: ``multiclass`` (int labels), ``multilabel`` ((N, K) targets, present where > 0) or
            ``regression`` (float targets).
        solver: ``lbfgs`` (full batch, default) or ``adamw`` (same objective; full batch by default, a cosine
            learning-rate decay to ``lr / 1000`` over all its steps, so it settles at the optimum).
        weight_decays: the grid searched on the validation split; a single value skips the search.
        max_iter: L-BFGS iterations per grid value.
        val_fraction: share of training samples (whole groups) held out to choose the weight decay.
        seed: seeds the validation split and the ``adamw`` shuffling.
        lr, epochs, batch_size: ``adamw`` settings (``batch_size`` None: the whole training set per step;
            ``epochs``: passes over it, one step each when full batch).
        device: torch device for the optimisation.
    """

    task: str = "multiclass"
    solver: str = "lbfgs"
    weight_decays: tuple[float, ...] = tuple(10.0 ** e for e in range(-6, 3))
    max_iter: int = 500
    val_fraction: float = 0.2
    seed: int = 0
    lr: float = 0.1
    epochs: int = 1000
    batch_size: Optional[int] = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.solver not in ("lbfgs", "adamw"):
            raise ValueError(f"unknown solver {self.solver!r}; expected lbfgs or adamw")
        self.weight_decays = tuple(float(w) for w in self.weight_decays)
        if not self.weight_decays or any(w < 0 for w in self.weight_decays):
            raise ValueError(f"weight_decays must be a non-empty list of values >= 0, got {self.weight_decays}")
        if not self.lr > 0 or self.epochs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError(f"adamw settings: lr must be > 0, epochs >= 1 and batch_size >= 1 (or None), got "
                             f"lr={self.lr}, epochs={self.epochs}, batch_size={self.batch_size}")


@dataclass
class LinearProbeModel:
    """A fitted probe: standardisation statistics of its training data and the linear map."""

    task: str
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (D, C)
    bias: torch.Tensor  # (C,)

    def decision_function(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw outputs ``(M, C)`` (logits, or the regression value in column 0)."""
        Xs = standardise(_as_float(X, "X"), self.mean, self.std)
        with torch.no_grad():
            return Xs @ self.weight + self.bias

    def predict(self, X: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """``(predictions, probabilities)``; probabilities are ``None`` for regression."""
        return _outputs_to_predictions(self.decision_function(X), self.task)


@dataclass
class LinearProbeResult:
    """What :func:`linear_probe` returns.

    ``predictions``: ``(M,)`` int64 classes, ``(M, K)`` int64 0/1 labels or ``(M,)`` float32 values;
    ``probabilities``: softmax ``(M, C)``, sigmoid ``(M, K)`` or ``None``; ``val_scores``: weight decay ->
    validation score (the task's primary metric, higher is better); ``metrics`` only when test targets were given.
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None
    weight_decay: float
    val_scores: dict[float, float]
    model: LinearProbeModel
    metrics: dict[str, Any] | None = None
    n_train: int = 0
    n_test: int = 0


def _as_float(X: Any, name: str) -> torch.Tensor:
    t = X.detach().cpu() if isinstance(X, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(X))
    t = t.to(torch.float32)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, features) array, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"{name} has non-finite values (first in row {bad})")
    return t


def _targets(y: Any, task: str, n: int, name: str, *, num_classes: int | None = None) -> torch.Tensor:
    """Check ``y`` against ``task`` and return the training targets (int64 classes, 0/1 float, float column)."""
    arr = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} rows but the features have {n}")
    if task == "multiclass":
        if arr.ndim != 1 or (arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0)):
            raise ValueError(f"{name} must be (N,) integer class codes for a multiclass probe")
        arr = arr.astype(np.int64)
        if arr.min() < 0 or (num_classes is not None and arr.max() >= num_classes):
            raise ValueError(f"{name} has class codes outside [0, {num_classes or 'C'}): "
                             f"min {arr.min()}, max {arr.max()}")
        return torch.from_numpy(arr)
    if not np.all(np.isfinite(arr.astype(np.float64))):
        raise ValueError(f"{name} has non-finite values")
    if task == "multilabel":
        if arr.ndim != 2:
            raise ValueError(f"{name} must be (N, K) for a multilabel probe, got shape {arr.shape}")
        return torch.from_numpy((arr > 0).astype(np.float32))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be (N,) for a regression probe, got shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.float32)).reshape(-1, 1)


def _loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    if task == "multiclass":
        return F.cross_entropy(out, target)
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(out, target, reduction="sum") / len(target)
    return 0.5 * F.mse_loss(out, target)


def _outputs_to_predictions(out: torch.Tensor, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    if task == "multiclass":
        return out.argmax(dim=1).numpy(), torch.softmax(out, dim=1).numpy()
    if task == "multilabel":
        proba = torch.sigmoid(out)
        return (proba >= 0.5).long().numpy(), proba.numpy()
    return out[:, 0].numpy(), None


_SMALL_PROBLEM = 1_000_000  # feature values below which the optimisation runs on one thread


@contextlib.contextmanager
def _threads_for(n_values: int) -> Iterator[None]:
    """Run small problems single-threaded: there, thread hand-offs cost more than the arithmetic
    (10x slower on a busy 2-core machine). The previous thread count is restored afterwards."""
    before = torch.get_num_threads()
    small = n_values < _SMALL_PROBLEM
    if small and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small and before > 1:
            torch.set_num_threads(before)


def _fit(Xs: torch.Tensor, target: torch.Tensor, wd: float, init: tuple[torch.Tensor, torch.Tensor],
         *, config: LinearProbeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the regularised objective from ``init``; returns ``(W, b)`` on the CPU."""
    dev = torch.device(config.device)
    X, tgt = Xs.to(dev), target.to(dev)
    # optimised as (C, D) with F.linear: the backward of X @ W with W as (D, C) takes a slow CPU path
    W = init[0].t().contiguous().to(dev).requires_grad_(True)
    b = init[1].clone().to(dev).requires_grad_(True)

    def objective(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return _loss(F.linear(xb, W, b), yb, config.task) + 0.5 * wd * (W * W).sum()

    if config.solver == "lbfgs":
        lbfgs = torch.optim.LBFGS([W, b], lr=1.0, max_iter=config.max_iter, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lbfgs.zero_grad()
            loss = objective(X, tgt)
            loss.backward()
            return loss

        lbfgs.step(closure)
    else:
        adam = torch.optim.AdamW([W, b], lr=config.lr, weight_decay=0.0)  # decay is in the objective
        batch = len(X) if config.batch_size is None else min(config.batch_size, len(X))
        steps = config.epochs * -(-len(X) // batch)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=steps, eta_min=config.lr * 1e-3)
        gen = torch.Generator().manual_seed(config.seed)
        for _ in range(config.epochs):
            order = torch.randperm(len(X), generator=gen) if batch < len(X) else torch.arange(len(X))
            for idx in order.split(batch):
                idx = idx.to(dev)
                adam.zero_grad()
                objective(X[idx], tgt[idx]).backward()
                adam.step()
                cosine.step()
    return W.detach().t().contiguous().cpu(), b.detach().cpu()


def _standardise(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``X`` standardised (:func:`~contrastive_mer.data.normalization.standardise`), with its mean and std."""
    mean = X.mean(dim=0)
    std = X.std(dim=0, unbiased=False)
    return standardise(X, mean, std), mean, std


def _initial(dim: int, target: torch.Tensor, task: str, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    b = torch.zeros(n_out)
    if task == "regression":
        b[0] = target.mean()
    return torch.zeros(dim, n_out), b


def fit_linear_probe(X: np.ndarray | torch.Tensor, y: Any, groups: Any = None,
                     config: LinearProbeConfig | None = None,
                     *, num_classes: int | None = None) -> tuple[LinearProbeModel, float, dict[float, float]]:
    """Choose the weight decay on a group-disjoint validation split of ``(X, y)``, then refit on all of it.

    Args:
        X: ``(N, D)`` training features. y: training targets (see :class:`LinearProbeConfig`).
        groups: ``(N,)`` group labels (e.g. speaker) for the validation split; ``None`` = one group per sample.
        num_classes: multiclass output size; defaults to ``max(y) + 1``.

    Returns:
        ``(model, chosen_weight_decay, val_scores)``.
    """
    config = config or LinearProbeConfig()
    with _threads_for(int(np.prod(np.shape(X))) if config.device == "cpu" else _SMALL_PROBLEM):
        return _fit_linear_probe(X, y, groups, config, num_classes=num_classes)


def _fit_linear_probe(X: np.ndarray | torch.Tensor, y: Any, groups: Any, config: LinearProbeConfig,
                      *, num_classes: int | None) -> tuple[LinearProbeModel, float, dict[float, float]]:
    Xt = _as_float(X, "X_train")
    target = _targets(y, config.task, len(Xt), "y_train", num_classes=num_classes)
    if config.task == "multiclass":
        n_out = int(num_classes if num_classes is not None else infer_num_classes(target))
    else:
        n_out = target.shape[1]
    grid = sorted(set(config.weight_decays), reverse=True)  # strongest first: warm starts stay close
    val_scores: dict[float, float] = {}
    init = _initial(Xt.shape[1], target, config.task, n_out)
    if len(grid) == 1:
        chosen = grid[0]
    else:
        g = np.arange(len(Xt)) if groups is None else np.asarray(groups)
        if len(g) != len(Xt):
            raise ValueError(f"groups has {len(g)} entries but the features have {len(Xt)} rows")
        tr, va = group_train_val_split(g, config.val_fraction, config.seed)
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        Xtr, mean, std = _standardise(Xt[tr_t])
        Xva = standardise(Xt[va_t], mean, std)
        y_va = target[va_t].numpy()
        y_va = y_va[:, 0] if config.task == "regression" else y_va
        params = _initial(Xt.shape[1], target[tr_t], config.task, n_out)
        best = (-np.inf, grid[0])
        for wd in grid:
            params = _fit(Xtr, target[tr_t], wd, params, config=config)
            with torch.no_grad():
                pred, _ = _outputs_to_predictions(Xva @ params[0] + params[1], config.task)
            score = primary_score(config.task, task_metrics(config.task, y_va, pred, n_out))
            val_scores[wd] = score
            if score > best[0]:  # strict: ties keep the stronger weight decay
                best = (score, wd)
            if wd == best[1]:
                init = params
        chosen = best[1]
    Xs, mean, std = _standardise(Xt)
    W, b = _fit(Xs, target, chosen, init, config=config)
    return LinearProbeModel(config.task, mean, std, W, b), chosen, val_scores


def linear_probe(X_train: np.ndarray | torch.Tensor, y_train: Any, X_test: np.ndarray | torch.Tensor,
                 y_test: Any = None, config: LinearProbeConfig | None = None, *, groups_train: Any = None,
                 num_classes: int | None = None) -> LinearProbeResult:
    """Fit a probe on the training set (see :func:`fit_linear_probe`) and predict the test set (the shared probe
    signature, :mod:`contrastive_mer.evaluation.probes`). ``groups_train`` keeps the weight-decay validation split
    group-disjoint.

    ``y_test`` is used only to compute ``metrics`` after the fit; it never influences the model.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.arange(40) % 2
    >>> X = rng.normal(size=(40, 3)) + 3 * y[:, None]  # two well separated classes
    >>> result = linear_probe(X[:30], y[:30], X[30:], y[30:], config=LinearProbeConfig(weight_decays=(1e-4,)))
    >>> result.predictions.tolist()
    [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    """
    config = config or LinearProbeConfig()
    if config.task == "multiclass" and num_classes is None:
        num_classes = infer_num_classes(y_train, y_test)
    model, wd, val_scores = fit_linear_probe(X_train, y_train, groups_train, config, num_classes=num_classes)
    Xte = _as_float(X_test, "X_test")
    if Xte.shape[1] != model.weight.shape[0]:
        raise ValueError(f"X_test has {Xte.shape[1]} features but X_train has {model.weight.shape[0]}")
    with _threads_for(Xte.numel() if config.device == "cpu" else _SMALL_PROBLEM):
        pred, proba = model.predict(Xte)
        metrics = None
        if y_test is not None:
            _targets(y_test, config.task, len(Xte), "y_test", num_classes=num_classes)
            metrics = task_metrics(config.task, np.asarray(y_test), pred, num_classes)
    return LinearProbeResult(pred, proba, wd, val_scores, model, metrics,
                             n_train=len(np.asarray(y_train)), n_test=len(Xte))
