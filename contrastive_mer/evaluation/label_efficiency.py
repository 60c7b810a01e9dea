"""Label efficiency: probes fitted on K labelled training clips per class, over several random draws.

**The draw rule** (:func:`draw_labelled`; one rule for every view, store and column): from a pool of labelled
training clips (ids and class codes), for each class ``c`` the pool's clips of class ``c`` are sorted by clip
id, permuted by ``numpy.random.default_rng([seed, draw, c])`` and the first ``min(K, n_c)`` are taken. A draw
therefore depends only on the pool's (id, label) pairs, ``K``, ``draw`` and ``seed``: two stores of the same
clips in another row order draw the same clips, the pretrained, random-init and raw-input columns draw the same
clips, and draws are nested in ``K`` (the clips of ``K=1`` are among those of ``K=5`` in the same draw). A class
with fewer than ``K`` clips gives all of them, and the results say so (``notes``).

:func:`label_efficiency` draws from one pool per fold (by default the union of that fold's views' training
rows; :func:`~contrastive_mer.evaluation.protocol.store_views` returns the pools of a store: all its labelled
training rows), keeps in each view the drawn clips it has, fits the probes on them only and tests on the full
test rows of the view. Each draw's value is the mean over folds; the results give mean ± sd (ddof 0) over draws
per ``K``, view and probe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from contrastive_mer.evaluation.knn import KnnProbeConfig
from contrastive_mer.evaluation.linear import LinearProbeConfig
from contrastive_mer.evaluation.metrics import PRIMARY_METRIC
from contrastive_mer.evaluation.protocol import ProbeView, _jsonable, run_probes

#: a pool of labelled training clips: (ids, class codes)
Pool = tuple[np.ndarray, np.ndarray]


def draw_labelled(ids: Sequence[str] | np.ndarray, y: np.ndarray, k: int, *, draw: int, seed: int = 0) -> np.ndarray:
    """Indices (into ``ids``, ascending) of up to ``k`` clips per class, by the module's draw rule.

    Rows with a negative (missing) class code are never drawn.

    >>> ids = np.array(["c", "a", "d", "b"])
    >>> y = np.array([0, 0, 1, 1])
    >>> rows = draw_labelled(ids, y, 1, draw=0, seed=0)
    >>> again = draw_labelled(ids[::-1], y[::-1], 1, draw=0, seed=0)  # the same clips in another order
    >>> sorted(ids[rows].tolist()) == sorted(ids[::-1][again].tolist())
    True
    """
    if k < 1 or draw < 0 or seed < 0:
        raise ValueError(f"labels per class must be >= 1, draw and seed >= 0; got k={k}, draw={draw}, seed={seed}")
    ids = np.asarray(ids, dtype=object)
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise ValueError("labels per class need a single integer (class) label per clip")
    if len(ids) != len(y):
        raise ValueError(f"{len(ids)} ids but {len(y)} labels")
    chosen: list[np.ndarray] = []
    for c in np.unique(y[y >= 0]):
        rows = np.flatnonzero(y == c)
        rows = rows[np.argsort(ids[rows].astype(str), kind="stable")]  # by clip id, not by row order
        perm = np.random.default_rng([int(seed), int(draw), int(c)]).permutation(len(rows))
        chosen.append(rows[perm[:k]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def short_classes(y: np.ndarray, k: int, class_names: Sequence[str] | None = None) -> dict[str, int]:
    """``{class: clips}`` of the classes with fewer than ``k`` labelled clips in ``y``."""
    y = np.asarray(y)
    codes, counts = np.unique(y[y >= 0], return_counts=True)
    return {(class_names[c] if class_names and c < len(class_names) else str(c)): int(n)
            for c, n in zip(codes.tolist(), counts.tolist()) if n < k}


@dataclass
class LabelEfficiencyRow:
    """One (view, probe, K): the primary metric of each draw (mean over folds) and training rows per draw."""

    view: str
    probe: str
    k: int
    scores: list[float]
    n_train: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))


@dataclass
class LabelEfficiencyResults:
    """Every row of a label-efficiency run, with the task, label, metric and the draws' settings."""

    task: str
    label: str
    metric: str
    ks: list[int]
    draws: int
    seed: int
    rows: list[LabelEfficiencyRow]
    notes: list[str] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    #: fold -> (ids, labels) drawn from (not in :meth:`to_dict`): pass them on to draw the same clips elsewhere
    pools: dict[int, Pool] | None = field(default=None, repr=False)

    def row(self, view: str, probe: str, k: int) -> LabelEfficiencyRow | None:
        return next((r for r in self.rows if (r.view, r.probe, r.k) == (view, probe, k)), None)

    def views(self) -> list[str]:
        return list(dict.fromkeys(r.view for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy; each row also carries its mean and sd."""
        rows = [{**asdict(r), "mean": r.mean, "std": r.std} for r in self.rows]
        return _jsonable({"task": self.task, "label": self.label, "metric": self.metric, "ks": self.ks,
                          "draws": self.draws, "seed": self.seed, "rule": DRAW_RULE, "notes": self.notes,
                          "setup": self.setup, "rows": rows})

    def format(self, percent: bool | None = None) -> str:
        """One table per K: view, probe, mean ± sd over draws, training rows (mean over draws)."""
        return format_label_efficiency({"": self}, percent=percent)


#: the draw rule in one line (written into every report)
DRAW_RULE = ("per class, the pool's clips sorted by id, permuted by numpy default_rng([seed, draw, class]), "
             "first min(K, n) taken")


def _pools_of(views: Sequence[ProbeView]) -> dict[int, Pool]:
    """The default pool of each fold: the union of its views' training rows (ids -> label)."""
    found: dict[int, dict[str, int]] = {}
    for v in views:
        if v.ids_train is None:
            raise ValueError(f"view {v.name!r} has no training ids (ProbeView.ids_train): cannot draw by clip id")
        labels = found.setdefault(v.fold, {})
        for i, label in zip(v.ids_train.tolist(), np.asarray(v.y_train).tolist()):
            if labels.setdefault(str(i), label) != label:
                raise ValueError(f"clip {i!r} has two labels in fold {v.fold} ({labels[str(i)]} and {label})")
    return {fold: (np.array(list(d), dtype=object), np.array(list(d.values()))) for fold, d in found.items()}


def label_efficiency(views: Sequence[ProbeView], ks: Sequence[int], draws: int, *, seed: int = 0,
                     task: str = "multiclass", label: str = "label", probes: Sequence[str] = ("linear",),
                     linear: LinearProbeConfig | None = None, knn: KnnProbeConfig | None = None,
                     num_classes: int | None = None, class_names: list[str] | None = None,
                     pools: Mapping[int, Pool] | None = None, setup: dict[str, Any] | None = None,
                     log: Callable[[str], None] | None = None) -> LabelEfficiencyResults:
    """Probe every view (folds: views sharing a name) with ``K`` drawn labelled clips per class, for each ``K``
    in ``ks`` and each of ``draws`` draws; see the module docstring for the rule. ``pools``: fold -> (ids,
    labels) to draw from (default: the union of the fold's views' training rows); give the same pools to
    several calls (columns) to draw the same clips for each."""
    if task != "multiclass":
        raise ValueError(f"labels per class need a multiclass label; this one is {task}")
    if draws < 1 or not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"labels per class must be >= 1 and draws >= 1, got {list(ks)} and {draws}")
    if not views:
        raise ValueError("no views to probe")
    pools = dict(pools) if pools is not None else _pools_of(views)
    if num_classes is None:
        from contrastive_mer.utils import infer_num_classes

        num_classes = infer_num_classes(*(y for v in views for y in (v.y_train, v.y_test)))
    metric = PRIMARY_METRIC[task]
    cells: dict[tuple[str, str, int], LabelEfficiencyRow] = {}
    notes: list[str] = []
    for k in sorted({int(k) for k in ks}):
        for fold, (pool_ids, pool_y) in sorted(pools.items()):
            short = short_classes(pool_y, k, class_names)
            if short:
                where = f" (fold {fold})" if len(pools) > 1 else ""
                notes.append(f"K={k}{where}: fewer than {k} labelled clips in class(es) "
                             + ", ".join(f"{c} ({n})" for c, n in short.items()) + ": all of them used")
        for d in range(draws):
            subset = []
            for v in views:
                if v.fold not in pools:
                    raise ValueError(f"no pool of labelled clips for fold {v.fold} of view {v.name!r}")
                pool_ids, pool_y = pools[v.fold]
                drawn = set(np.asarray(pool_ids, dtype=object)[draw_labelled(pool_ids, pool_y, k, draw=d, seed=seed)]
                            .astype(str).tolist())
                assert v.ids_train is not None  # checked by _pools_of or required with given pools
                sel = np.flatnonzero([str(i) in drawn for i in v.ids_train.tolist()])
                groups = None if v.groups_train is None else np.asarray(v.groups_train)[sel]
                if groups is not None and len(set(groups.tolist())) < 2:
                    groups = None  # one group: the weight-decay split falls back to single clips
                subset.append(ProbeView(v.name, v.X_train[sel], v.y_train[sel], groups, v.X_test, v.y_test,
                                        v.fold, v.ids_train[sel]))
            if log:
                log(f"labels per class {k}, draw {d + 1}/{draws}")
            res = run_probes(subset, task, label, probes, linear=linear, knn=knn, num_classes=num_classes,
                             class_names=class_names)
            for r in res.rows:
                row = cells.setdefault((r.view, r.probe, k), LabelEfficiencyRow(r.view, r.probe, k, [], []))
                row.scores.append(float(r.metrics[metric]))
                row.n_train.append(int(r.n_train))
    order = {name: i for i, name in enumerate(dict.fromkeys(v.name for v in views))}
    rows = sorted(cells.values(), key=lambda r: (r.k, order[r.view], list(probes).index(r.probe)))
    return LabelEfficiencyResults(task, label, metric, sorted({int(k) for k in ks}), draws, seed, rows,
                                  list(dict.fromkeys(notes)), dict(setup or {}), pools)


def _display(view: str) -> str:
    return view.split("/", 1)[1] if view.startswith("raw/") else view


def format_label_efficiency(columns: Mapping[str, LabelEfficiencyResults], percent: bool | None = None) -> str:
    """One table per K: a line per view, a cell per column (``linear mean ± sd / kNN mean``; a single unnamed
    column also gives the probes on separate lines). ``percent``: values x 100 (default: unless regression)."""
    first = next(iter(columns.values()))
    scale = 100.0 if (percent if percent is not None else first.task != "regression") else 1.0
    named = [c for c in columns if c]
    lines = [f"labels per class ({first.label}, {first.metric}, mean ± sd over {first.draws} draws, seed "
             f"{first.seed}; draw rule: {DRAW_RULE})"]
    for k in first.ks:
        lines.append(f"K = {k}")
        if not named:
            for r in (r for r in first.rows if r.k == k):
                lines.append(f"  {r.view:<28} {r.probe:<7} {scale * r.mean:6.1f} ± {scale * r.std:4.1f}   "
                             f"n_train {np.mean(r.n_train):.0f}")
            continue
        views = list(dict.fromkeys(_display(v) for res in columns.values() for v in res.views()))
        width = max(len(v) for v in views) + 2
        lines.append("  " + "view".ljust(width) + "".join(c.rjust(22) for c in named))
        for view in views:
            text = "  " + view.ljust(width)
            for c in named:
                res = columns[c]
                raw = next((v for v in res.views() if _display(v) == view), None)
                lin = res.row(raw, "linear", k) if raw else None
                knn = res.row(raw, "knn", k) if raw else None
                cell = "  -  " if lin is None else f"{scale * lin.mean:5.1f} ±{scale * lin.std:4.1f}"
                cell += "" if knn is None else f" / {scale * knn.mean:5.1f}"
                text += cell.rjust(22)
            lines.append(text)
    notes = list(dict.fromkeys(n for res in columns.values() for n in res.notes))
    return "\n".join(lines + notes)


def curve(results: LabelEfficiencyResults, view: str, probe: str = "linear") -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """``(ks, means, sds)`` of one view and probe (the numbers a label-efficiency plot draws)."""
    rows = [results.row(view, probe, k) for k in results.ks]
    kept = [r for r in rows if r is not None]
    return (np.array([r.k for r in kept], dtype=float), np.array([r.mean for r in kept]),
            np.array([r.std for r in kept]))


def label_efficiency_stores(train: Any, test: Any | None = None, *, label: str, ks: Sequence[int], draws: int,
                            views: Sequence[str] | None = None, folds: int | None = None, group: str | None = None,
                            probes: Sequence[str] = ("linear",), linear: LinearProbeConfig | None = None,
                            knn: KnnProbeConfig | None = None, task: str | None = None, seed: int = 0,
                            normalize_by: str | None = None, test_groups: Sequence[str] | None = None,
                            missing: str | None = None, pools: Mapping[int, Pool] | None = None,
                            log: Callable[[str], None] | None = None) -> LabelEfficiencyResults:
    """:func:`label_efficiency` of stores (open stores or paths), split as
    :func:`~contrastive_mer.evaluation.protocol.probe_stores` splits them; the draws come from ``pools`` or,
    by default, from all the labelled training clips of the (train) store in each fold."""
    from contrastive_mer.evaluation.protocol import opened_store_views

    pv, info = opened_store_views(train, test, label, views, folds=folds, group=group, seed=seed, task=task,
                                  normalize_by=normalize_by, test_groups=test_groups, missing=missing)
    return label_efficiency(pv, ks, draws, seed=seed, task=info["task"], label=label, probes=probes,
                            linear=linear or LinearProbeConfig(seed=seed), knn=knn,
                            num_classes=info["num_classes"], class_names=info["class_names"],
                            pools=pools if pools is not None else info["pools"], setup=info["setup"], log=log)
