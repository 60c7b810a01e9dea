"""Chance level and split sizes of a probing report: what a constant prediction scores on the test rows, and the
training and test rows of every fold, so that a score is read against both (``evaluation.txt``).

For a class label the confusion matrix (summed over folds, every test row once) gives the test rows per class:
always answering the most frequent class scores its share as accuracy, and any constant answer scores ``1 / K``
as balanced accuracy (UAR) over the ``K`` classes with test rows. A constant answer per label of a multi-label
scores 0.5 weighted accuracy. A float label has no chance level here (the MAE of a constant depends on it).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from contrastive_mer.evaluation.protocol import ProbeResults, ViewResult

__all__ = ["chance_level", "fold_rows", "report_lines"]


def chance_level(row: ViewResult, task: str, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """``{"accuracy", "balanced_accuracy", "majority_class", "classes"}`` for a class label (from the row's
    summed confusion matrix), ``{"mean_weighted_accuracy": 0.5}`` for a multi-label, ``{}`` otherwise."""
    if task == "multilabel":
        return {"mean_weighted_accuracy": 0.5}
    confusion = row.details.get("confusion_matrix")
    if task != "multiclass" or confusion is None:
        return {}
    counts = np.asarray(confusion).sum(axis=1)
    if counts.sum() == 0:
        return {}
    top = int(np.argmax(counts))
    name = class_names[top] if class_names and top < len(class_names) else str(top)
    classes = int((counts > 0).sum())
    return {"accuracy": float(counts[top] / counts.sum()), "balanced_accuracy": 1.0 / classes,
            "majority_class": name, "classes": classes}


def fold_rows(row: ViewResult) -> list[tuple[int, int]]:
    """``(training rows, test rows)`` of each fold of ``row`` (one pair for a single split)."""
    return [(int(f["n_train"]), int(f["n_test"])) for f in row.folds]


def _row_of(results: ProbeResults, view: str | None) -> ViewResult | None:
    rows = [r for r in results.rows if r.probe == "linear"] or results.rows
    return next((r for r in rows if r.view == view), rows[0] if rows else None)


def report_lines(results: ProbeResults, view: str | None = None) -> list[str]:
    """Two lines for a report: the chance level of ``view``'s test rows (the first linear row when ``view`` is
    not probed) and its rows per fold."""
    row = _row_of(results, view)
    if row is None:
        return []
    lines = []
    chance = chance_level(row, results.task, results.class_names)
    if "accuracy" in chance:
        lines.append(f"chance level ({row.view}, a constant prediction): accuracy {100 * chance['accuracy']:.1f} "
                     f"(always {chance['majority_class']!r}, the most frequent test class), UAR "
                     f"{100 * chance['balanced_accuracy']:.1f} (1/{chance['classes']} classes)")
    elif "mean_weighted_accuracy" in chance:
        lines.append(f"chance level ({row.view}, a constant prediction per label): weighted accuracy 50.0")
    sizes = fold_rows(row)
    if len(sizes) > 1:
        lines.append(f"rows per fold ({row.view}, train / test): "
                     + ", ".join(f"{i + 1}: {tr} / {te}" for i, (tr, te) in enumerate(sizes)))
    elif sizes:
        lines.append(f"rows ({row.view}, train / test): {sizes[0][0]} / {sizes[0][1]}")
    return lines
