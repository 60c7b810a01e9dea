"""Emotion-recognition metrics on numpy or torch inputs, computed with torchmetrics.

Three task shapes are covered:

* categorical emotions (RAVDESS, CREMA-D, MELD, IEMOCAP): accuracy (WAR), balanced accuracy (UAR, the
  mean recall over the classes present in ``y_true``), macro and weighted F1, confusion matrix;
* multi-label emotions (CMU-MOSEI): per-emotion weighted accuracy ``WA = (TP * N / P + TN) / (2N)``
  (Tong et al., 2017) and weighted F1, plus their means;
* sentiment regression in [-3, 3] (CMU-MOSI/MOSEI): MAE, Pearson r, Acc-2 in both conventions papers report
  ("non-zero": negative vs positive on non-zero targets, ``acc2``; MMSA's "has-zero": negative vs
  non-negative on every sample, ``acc2_has0``), Acc-7 (predictions and targets rounded and clipped to [-3, 3]).

Scalar results are python floats; matrices and per-label lists are numpy arrays.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torchmetrics.functional import mean_absolute_error, pearson_corrcoef
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_recall,
)

from contrastive_mer.utils import infer_num_classes

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _tensor(x: ArrayLike, name: str, dtype: torch.dtype) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    return t.to(dtype)


def _check_same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"y_true has shape {tuple(a.shape)} but y_pred has shape {tuple(b.shape)}")


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> dict[str, Any]:
    """Single-label classification metrics.

    Args:
        y_true, y_pred: ``(N,)`` integer class codes in ``[0, num_classes)``.
        num_classes: number of classes; defaults to ``max(y_true, y_pred) + 1``.

    Returns:
        ``accuracy`` (WAR), ``balanced_accuracy`` (UAR: mean recall over classes present in ``y_true``),
        ``f1_macro`` (over classes present in ``y_true`` or ``y_pred``), ``f1_weighted`` (by support),
        ``confusion_matrix`` (``(C, C)`` int64, rows = true class, columns = predicted class).
    """
    t = _tensor(y_true, "y_true", torch.int64).reshape(-1)
    p = _tensor(y_pred, "y_pred", torch.int64).reshape(-1)
    _check_same_shape(t, p)
    if num_classes is None:
        num_classes = infer_num_classes(t, p)
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.min().item() < 0 or v.max().item() >= num_classes:
            raise ValueError(f"{name} has class codes outside [0, {num_classes}): "
                             f"min {v.min().item()}, max {v.max().item()}")
    c = max(int(num_classes), 2)  # torchmetrics needs at least two classes
    recall = multiclass_recall(p, t, num_classes=c, average="none")
    support = torch.bincount(t, minlength=c) > 0
    return {
        "accuracy": multiclass_accuracy(p, t, num_classes=c, average="micro").item(),
        "balanced_accuracy": recall[support].mean().item(),
        "f1_macro": multiclass_f1_score(p, t, num_classes=c, average="macro").item(),
        "f1_weighted": multiclass_f1_score(p, t, num_classes=c, average="weighted").item(),
        "confusion_matrix": multiclass_confusion_matrix(p, t, num_classes=c)[:num_classes, :num_classes].numpy(),
    }


def multilabel_metrics(y_true: ArrayLike, y_pred: ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """Per-label binary metrics for multi-label emotions (the CMU-MOSEI protocol).

    Args:
        y_true: ``(N, K)``; a label is present where the value is > 0 (so binary 0/1 targets and MOSEI's
            intensity scores both work).
        y_pred: ``(N, K)`` binary predictions or probabilities, binarised as ``y_pred >= threshold``.

    Returns:
        ``weighted_accuracy`` and ``f1_weighted``: ``(K,)`` arrays, one value per label; ``mean_weighted_accuracy``
        and ``mean_f1_weighted``: their means. WA is ``(TP * N / P + TN) / (2N)`` = the mean of the recall on
        positives and on negatives; where a label has only one kind of target in ``y_true``, it is the recall
        of that kind. F1 is the support-weighted F1 of the two classes (absent/present).
    """
    t = _tensor(y_true, "y_true", torch.float64)
    p = _tensor(y_pred, "y_pred", torch.float64)
    _check_same_shape(t, p)
    if t.ndim != 2:
        raise ValueError(f"multi-label targets must be (N, K), got shape {tuple(t.shape)}")
    t = (t > 0).long()
    p = (p >= threshold).long()
    wa, f1 = [], []
    for j in range(t.shape[1]):
        recall = multiclass_recall(p[:, j], t[:, j], num_classes=2, average="none")
        present = torch.bincount(t[:, j], minlength=2) > 0
        wa.append(recall[present].mean().item())
        f1.append(multiclass_f1_score(p[:, j], t[:, j], num_classes=2, average="weighted").item())
    wa_arr, f1_arr = np.asarray(wa), np.asarray(f1)
    return {
        "weighted_accuracy": wa_arr,
        "f1_weighted": f1_arr,
        "mean_weighted_accuracy": float(wa_arr.mean()),
        "mean_f1_weighted": float(f1_arr.mean()),
    }


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, Any]:
    """Sentiment-regression metrics (CMU-MOSI/MOSEI scale [-3, 3]).

    Returns:
        ``mae``; ``pearson_r`` (NaN when either side is constant); ``acc2`` and ``f1_acc2`` (weighted F1), the
        "non-zero" convention: negative vs positive (``> 0``) on samples whose target is non-zero (NaN when all
        targets are zero); ``acc2_has0`` and ``f1_acc2_has0``, MMSA's "has-zero" convention: negative (``< 0``)
        vs non-negative (``>= 0``) on every sample, predictions split the same way;
        ``acc7``: agreement of ``clip(round(x), -3, 3)`` between targets and predictions (round half to even,
        as numpy and torch do).
    """
    t = _tensor(y_true, "y_true", torch.float64).reshape(-1)
    p = _tensor(y_pred, "y_pred", torch.float64).reshape(-1)
    _check_same_shape(t, p)
    if not (torch.isfinite(t).all() and torch.isfinite(p).all()):
        raise ValueError("regression targets and predictions must be finite")
    if len(t) > 1 and t.std() > 0 and p.std() > 0:
        r = pearson_corrcoef(p, t).item()
    else:
        r = float("nan")
    nonzero = t != 0
    if nonzero.any():
        tb, pb = (t[nonzero] > 0).long(), (p[nonzero] > 0).long()
        acc2 = multiclass_accuracy(pb, tb, num_classes=2, average="micro").item()
        f1_acc2 = multiclass_f1_score(pb, tb, num_classes=2, average="weighted").item()
    else:
        acc2 = f1_acc2 = float("nan")
    th, ph = (t >= 0).long(), (p >= 0).long()
    acc2_has0 = multiclass_accuracy(ph, th, num_classes=2, average="micro").item()
    f1_acc2_has0 = multiclass_f1_score(ph, th, num_classes=2, average="weighted").item()
    t7 = torch.clamp(torch.round(t), -3, 3).long() + 3
    p7 = torch.clamp(torch.round(p), -3, 3).long() + 3
    return {
        "mae": mean_absolute_error(p, t).item(),
        "pearson_r": r,
        "acc2": acc2,
        "f1_acc2": f1_acc2,
        "acc2_has0": acc2_has0,
        "f1_acc2_has0": f1_acc2_has0,
        "acc7": multiclass_accuracy(p7, t7, num_classes=7, average="micro").item(),
    }


def task_metrics(task: str, y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> dict[str, Any]:
    """Dispatch to the metrics of ``task`` (``multiclass``, ``multilabel`` or ``regression``)."""
    if task == "multiclass":
        return classification_metrics(y_true, y_pred, num_classes)
    if task == "multilabel":
        return multilabel_metrics(y_true, y_pred)
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    raise ValueError(f"unknown task {task!r}; expected multiclass, multilabel or regression")


#: the metric each task ranks models by (higher is better; MAE is negated by :func:`primary_score`)
PRIMARY_METRIC = {"multiclass": "accuracy", "multilabel": "mean_weighted_accuracy", "regression": "mae"}


def primary_score(task: str, metrics: dict[str, Any]) -> float:
    """The task's headline metric as a higher-is-better number (used for model selection)."""
    value = float(metrics[PRIMARY_METRIC[task]])
    return -value if task == "regression" else value
