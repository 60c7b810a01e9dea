"""The probing protocol: run linear and/or kNN probes over several views of the data and tabulate them.

A *view* is one feature matrix to probe, named as :mod:`contrastive_mer.store.views` says (a modality's
``features/<m>``, ``fused/<mode>``, ``projections/<m>``, ...) and restricted to its usable rows. Two set-ups
are supported:

* a train store and a test store (the weight decay is chosen on a group-disjoint split of the train store);
* one store and K group-disjoint folds by a group name such as ``speaker`` (mean and std over folds).

Callers without a store build :class:`ProbeView` s from arrays (:func:`kfold_views` for folds) and call
:func:`run_probes`. Rows whose label is missing (-1 for categorical labels, NaN for float ones) are dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from contrastive_mer.data.splits import group_kfold, holdout_split
from contrastive_mer.evaluation.knn import KnnProbeConfig
from contrastive_mer.evaluation.linear import LinearProbeConfig
from contrastive_mer.evaluation.mlp_probe import MLPProbeConfig
from contrastive_mer.evaluation.probes import DEFAULT_PROBES, PROBES
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.utils import infer_num_classes

#: table columns per task: (metric key, column title)
COLUMNS = {
    "multiclass": [("accuracy", "acc"), ("balanced_accuracy", "uar"), ("f1_macro", "f1_macro"),
                   ("f1_weighted", "f1_w")],
    "multilabel": [("mean_weighted_accuracy", "wa"), ("mean_f1_weighted", "f1_w")],
    "regression": [("mae", "mae"), ("pearson_r", "r"), ("acc2", "acc2_non0"), ("acc2_has0", "acc2_has0"),
                   ("acc7", "acc7")],
}


@dataclass
class ProbeView:
    """One train/test split of one view. Views sharing a ``name`` are folds of the same view. ``ids_train``: the
    training rows' clip ids, where known (label-efficiency draws pick clips by id)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    groups_train: np.ndarray | None
    X_test: np.ndarray
    y_test: np.ndarray
    fold: int = 0
    ids_train: np.ndarray | None = None


@dataclass
class ViewResult:
    """Result of one probe on one view.

    ``metrics``: scalar metrics (mean over folds); ``std``: their standard deviation over folds (ddof=0; empty
    for a single split); ``n_train``: training rows (mean over folds); ``n_test``: test rows (summed over
    folds, so each row counts once); ``details``: confusion matrix (summed over folds), per-label values
    (mean over folds), chosen weight decays; ``folds``: per-fold scalar metrics and sizes.
    """

    view: str
    probe: str
    metrics: dict[str, float]
    std: dict[str, float]
    n_train: int
    n_test: int
    details: dict[str, Any] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ProbeResults:
    """All rows of a probing run, with the task, label and how the data was split (``setup``)."""

    task: str
    label: str
    rows: list[ViewResult]
    setup: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    #: view -> why it was not probed (a fold without training or test rows); the other views were
    not_probed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (arrays become lists, NaN becomes None)."""
        return _jsonable({"task": self.task, "label": self.label, "class_names": self.class_names,
                          "setup": self.setup, "rows": [dataclasses.asdict(r) for r in self.rows],
                          "not_probed": self.not_probed})


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def infer_task(labels: np.ndarray) -> str:
    """``multilabel`` for (N, K) labels, ``multiclass`` for integer labels, ``regression`` otherwise."""
    if labels.ndim == 2:
        return "multilabel"
    return "multiclass" if labels.dtype.kind in "iub" else "regression"


def valid_label_rows(labels: np.ndarray) -> np.ndarray:
    """Rows whose label is not missing (-1 / any negative code for categorical, NaN for float)."""
    if labels.dtype.kind in "iub":
        return labels >= 0
    finite = np.isfinite(labels)
    return finite.all(axis=1) if labels.ndim == 2 else finite


# ------------------------------------------------------------------------------------------ array API
def kfold_views(name: str, X: np.ndarray, y: np.ndarray, groups: Sequence, *, k: int, seed: int = 0) -> list[ProbeView]:
    """``k`` group-disjoint folds of one array view (see :func:`~contrastive_mer.data.splits.group_kfold`)."""
    group_of = np.asarray(groups)
    return [ProbeView(name, X[tr], y[tr], group_of[tr], X[te], y[te], fold=i)
            for i, (tr, te) in enumerate(group_kfold(group_of, k, seed))]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}


def _aggregate(view: str, probe: str, runs: list[tuple[dict[str, Any], int, int, dict[str, Any]]]) -> ViewResult:
    """Mean/std of scalar metrics over folds; confusion matrices summed, per-label arrays averaged."""
    scalars = [_scalars(m) for m, *_ in runs]
    keys = list(scalars[0])
    mean = {k: float(np.mean([s[k] for s in scalars])) for k in keys}
    std = {k: float(np.std([s[k] for s in scalars])) for k in keys} if len(runs) > 1 else {}
    details: dict[str, Any] = {}
    for key in (k for k, v in runs[0][0].items() if np.ndim(v) > 0):
        stacked = np.stack([np.asarray(m[key]) for m, *_ in runs])
        details[key] = stacked.sum(0) if key == "confusion_matrix" else stacked.mean(0)
    for key in runs[0][3]:
        values = [extra[key] for *_, extra in runs]
        details[key] = values[0] if len(values) == 1 else values
    folds = [{"metrics": s, "n_train": ntr, "n_test": nte, **extra}
             for s, (_, ntr, nte, extra) in zip(scalars, runs)]
    return ViewResult(view, probe, mean, std, int(round(np.mean([r[1] for r in runs]))),
                      int(sum(r[2] for r in runs)), details, folds)


def empty_fold(folds: Sequence[ProbeView]) -> str | None:
    """Why the folds of one view cannot be probed (the first fold without training or test rows), or None."""
    for v in folds:
        if len(v.X_train) == 0 or len(v.X_test) == 0:
            return f"fold {v.fold} has {len(v.X_train)} training and {len(v.X_test)} test rows"
    return None


def _probe_once(probe: str, v: ProbeView, config: Any,
                num_classes: int | None) -> tuple[dict[str, Any], int, int, dict[str, Any]]:
    """One probe on one fold: ``(metrics, n_train, n_test, extra)``; errors name the view and fold."""
    where = f"view {v.name!r} fold {v.fold}"
    if len(v.X_train) == 0 or len(v.X_test) == 0:
        raise ValueError(f"{where} has {len(v.X_train)} training and {len(v.X_test)} test rows; "
                         "both must be non-empty")
    entry = PROBES.get(probe)
    try:
        result = entry.run(v.X_train, v.y_train, v.X_test, v.y_test, config, groups_train=v.groups_train,
                           num_classes=num_classes)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    metrics = result.metrics
    assert metrics is not None  # the probes measure whenever y_test is given, and a ProbeView always has one
    return metrics, result.n_train, result.n_test, entry.extra(result)


def run_probes(views: Sequence[ProbeView], task: str, label: str = "label", probes: Sequence[str] = DEFAULT_PROBES,
               *, linear: LinearProbeConfig | None = None, knn: KnnProbeConfig | None = None,
               num_classes: int | None = None, class_names: list[str] | None = None,
               setup: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> ProbeResults:
    """Run each probe on each view (views sharing a name are folds, aggregated into one row).

    ``probes`` are names in :data:`~contrastive_mer.evaluation.probes.PROBES`. The configs' ``task`` is replaced
    by ``task``; the mlp probe takes the linear config's seed, a probe without a config here its defaults.
    Returns rows in view order, probes in ``probes`` order. A view with a fold lacking training or test rows is
    not probed: :attr:`ProbeResults.not_probed` gives the reason (a ValueError when no view is left).
    """
    unknown = [p for p in probes if p not in PROBES]
    if unknown or not probes:
        raise ValueError(f"unknown probe(s) {unknown}; known: {', '.join(PROBES.names())}")
    if not views:
        raise ValueError("no views to probe")
    lin = dataclasses.replace(linear or LinearProbeConfig(), task=task)
    given: dict[str, Any] = {"linear": lin, "knn": knn or KnnProbeConfig(), "mlp": MLPProbeConfig(seed=lin.seed)}
    configs = {p: dataclasses.replace(given[p] if p in given else PROBES.get(p).config(), task=task)
               for p in probes}
    if task == "multiclass" and num_classes is None:
        num_classes = infer_num_classes(*(y for v in views for y in (v.y_train, v.y_test)))
    by_name: dict[str, list[ProbeView]] = {}
    for v in views:
        by_name.setdefault(v.name, []).append(v)
    rows = []
    not_probed: dict[str, str] = {}
    for name, folds in by_name.items():
        reason = empty_fold(folds)
        if reason is not None:  # this view only: the others are still probed, the table and report say why
            not_probed[name] = reason
            continue
        if log:  # one line per view (not per probe and fold)
            split = f"{len(folds)} folds" if len(folds) > 1 else f"{len(folds[0].X_train)} train"
            log(f"{', '.join(probes)} probe{'s' * (len(probes) > 1)} on {name} ({split}, "
                f"{sum(len(v.X_test) for v in folds)} test rows)")
        for probe in probes:
            runs = []
            for v in folds:
                runs.append(_probe_once(probe, v, configs[probe], num_classes))
            rows.append(_aggregate(name, probe, runs))
    if not rows:
        raise ValueError("no view could be probed: " + "; ".join(f"{k}: {v}" for k, v in not_probed.items()))
    setup = dict(setup or {})
    setup.setdefault("probes", list(probes))
    for probe, config in configs.items():
        setup.setdefault(probe, dataclasses.asdict(config))
    return ProbeResults(task, label, rows, setup, class_names, not_probed)


# ------------------------------------------------------------------------------------------ store API
def resolve_views(store: Any, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Map view names to ``(display name, store key)`` by the store's one naming rule
    (:mod:`contrastive_mer.store.views`: a modality -> ``features/<m>``, ``fused`` -> every fused mode, full keys
    as given). A modality is displayed by its name, any other view by its key. ``None`` = every modality and
    every fused mode.
    """
    return list(dict.fromkeys((name if name in store.modalities else key, key)
                              for name, key in store.expand_views(names)))


def _label_info(train: Any, test: Any | None, label: str, task: str | None
                ) -> tuple[np.ndarray, np.ndarray | None, list[str] | None, str, int | None]:
    """``(y_train, y_test or None, class names, task, num_classes)`` of ``label`` in the stores."""
    y_train: np.ndarray = train.labels(label)
    y_test: np.ndarray | None = None
    names: list[str] | None = train.class_names(label)
    if test is not None:
        y_test = test.labels(label)
        if y_test.ndim != y_train.ndim or y_test.shape[1:] != y_train.shape[1:]:
            raise ValueError(f"label {label!r} has shape {y_train.shape[1:]} in {train.path} but "
                             f"{y_test.shape[1:]} in {test.path}")
        if test.class_names(label) != names:
            raise ValueError(f"label {label!r} has class names {names} in {train.path} but "
                             f"{test.class_names(label)} in {test.path}")
    task = task or infer_task(y_train)
    num_classes = None
    if task == "multiclass":
        if names:
            num_classes = len(names)
        else:
            num_classes = infer_num_classes(y_train, y_test) or None
    return y_train, y_test, names, task, num_classes


def _group_array(store: Any, group: str) -> np.ndarray:
    if group not in store.group_names():
        raise KeyError(f"group {group!r} is not in {store.path}; it has groups {store.group_names()}")
    return np.asarray(store.groups(group))


def _normalized(store: Any, X: np.ndarray, usable: np.ndarray, by: str | None) -> np.ndarray:
    """``X`` standardised within each ``by`` group over its usable rows (unusable rows left as they are)."""
    if by is None:
        return X
    from contrastive_mer.data.normalization import zscore_by_group

    out = np.array(X, dtype=np.float32, copy=True)
    out[usable] = zscore_by_group(X[usable], _group_array(store, by)[usable])
    return out


def store_views(train: Any, test: Any | None, label: str, views: Sequence[str] | None = None,
                *, folds: int | None = None, group: str | None = None, seed: int = 0,
                task: str | None = None, normalize_by: str | None = None,
                test_groups: Sequence[str] | None = None,
                missing: str | None = None) -> tuple[list[ProbeView], dict[str, Any]]:
    """Build :class:`ProbeView` s from a train store and a test store, or from one store and ``folds``.

    ``group`` names the group that folds (required) and the linear probe's validation split are disjoint
    by; without it the validation split uses ``speaker`` when the train store has it, else single samples.
    ``normalize_by`` (e.g. ``speaker``) standardises every view within each such group of each store, from that
    group's own usable rows (:func:`~contrastive_mer.data.normalization.zscore_by_group`): label-free, and
    with group-disjoint folds no test row enters a training row's statistics or the reverse.
    ``test_groups`` (instead of a test store or folds): one split, the rows of these ``group`` values against
    the others (e.g. held-out actors).
    ``missing`` (a modality): test as :class:`~contrastive_mer.evaluation.missing.MissingModality` says (only the
    test clips that lack it, or, when none does, every test clip with it masked out and the fusion recomputed);
    training rows stay as they are; views (and folds) left without a test row are dropped, and
    ``setup["missing"]`` says what was done.
    Returns ``(views, info)`` with ``info`` holding task, num_classes, class_names, the setup, and ``pools``:
    fold -> (ids, labels) of all the labelled training clips of that fold (what label-efficiency draws from).
    """
    if sum(x is not None for x in (test, folds, test_groups)) != 1:
        raise ValueError("give one of a test store, a number of folds or test groups")
    if (folds is not None or test_groups is not None) and group is None:
        raise ValueError("folds and test groups need a group name (e.g. speaker) so that splits are group-disjoint")
    y_train, y_test, class_names, task, num_classes = _label_info(train, test, label, task)
    val_group = group if group is not None else ("speaker" if "speaker" in train.group_names() else None)
    groups = _group_array(train, val_group) if val_group is not None else None
    setup: dict[str, Any] = {"train": str(train.path), "test": None if test is None else str(test.path),
                             "folds": folds, "group": val_group, "seed": seed, "normalize_by": normalize_by,
                             "test_groups": None if test_groups is None else list(test_groups)}
    resolved = resolve_views(train, views)
    if test is not None:
        resolve_views(test, [key for _, key in resolved])  # KeyError naming the test file if one is missing
    ok_train = valid_label_rows(y_train)
    ids = np.asarray(train.ids, dtype=object)
    tested: Any = None
    if missing is not None:
        from contrastive_mer.evaluation.missing import MissingModality

        tested = MissingModality(test if test is not None else train, missing,
                                 valid_label_rows(y_test) if test is not None and y_test is not None else ok_train)
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    if test is None:
        assert groups is not None  # folds and test groups need `group` (checked above)
        labelled = np.flatnonzero(ok_train)
        if folds is not None:
            made = group_kfold(groups[labelled], folds, seed)
        else:
            assert test_groups is not None  # one of a test store, folds and test groups (checked above)
            made = holdout_split(groups[labelled], test_groups)
        splits = [(labelled[tr], labelled[te]) for tr, te in made]
    out: list[ProbeView] = []
    tested_rows: set[int] = set()
    dropped: list[str] = []
    for name, key in resolved:
        view = train.view(key)
        X, usable = _normalized(train, view.vectors, view.usable, normalize_by), view.usable
        if test is not None and y_test is not None:
            source = tested if tested is not None else test
            test_view = source.view(key)
            X_test, usable_test = _normalized(test, test_view.vectors, test_view.usable, normalize_by), \
                test_view.usable
            if tested is not None:
                usable_test = tested.test_rows(key)
            if X_test.shape[1] != X.shape[1]:
                raise ValueError(f"{key} has {X.shape[1]} columns in {train.path} but {X_test.shape[1]} "
                                 f"in {test.path}")
            tr = np.flatnonzero(usable & ok_train)
            te = np.flatnonzero(usable_test & valid_label_rows(y_test))
            if tested is not None and len(te) == 0:
                dropped.append(name)
                continue
            tested_rows.update(te.tolist())
            out.append(ProbeView(name, X[tr], y_train[tr], None if groups is None else groups[tr],
                                 X_test[te], y_test[te], ids_train=ids[tr]))
            continue
        X_te, usable_te = X, usable
        if tested is not None:
            masked = tested.view(key)
            X_te = _normalized(train, masked.vectors, masked.usable, normalize_by)
            usable_te = tested.test_rows(key)
        kept = 0
        for i, (tr, te) in enumerate(splits):
            tr, te = tr[usable[tr]], te[usable_te[te]]
            if tested is not None and len(te) == 0:
                continue
            kept += 1
            tested_rows.update(te.tolist())
            out.append(ProbeView(name, X[tr], y_train[tr], None if groups is None else groups[tr], X_te[te],
                                 y_train[te], fold=i, ids_train=ids[tr]))
        if not kept:
            dropped.append(name)
    if tested is not None:
        if not out:
            raise ValueError(f"--missing {missing}: no view has a test clip to test "
                             f"({'none of the test clips lacks it' if tested.mode == 'lacking' else 'masked'})")
        setup["missing"] = {**tested.describe(len(tested_rows)), "dropped_views": dropped}
    if test is not None:
        labelled = np.flatnonzero(ok_train)
        pools = {0: (ids[labelled], y_train[labelled])}
    else:
        pools = {i: (ids[tr], y_train[tr]) for i, (tr, _) in enumerate(splits)}
    info = {"task": task, "num_classes": num_classes, "class_names": class_names, "setup": setup, "pools": pools}
    return out, info


def probe_stores(train: Any, test: Any | None = None, *, label: str, views: Sequence[str] | None = None,
                 folds: int | None = None, group: str | None = None, probes: Sequence[str] = DEFAULT_PROBES,
                 linear: LinearProbeConfig | None = None, knn: KnnProbeConfig | None = None,
                 task: str | None = None, seed: int = 0, log: Callable[[str], None] | None = None,
                 normalize_by: str | None = None, test_groups: Sequence[str] | None = None,
                 missing: str | None = None) -> ProbeResults:
    """Probe stores (open :class:`~contrastive_mer.store.hdf5.FeatureStore` s or paths to them).

    Without an explicit ``linear`` config the probe uses ``LinearProbeConfig(seed=seed)``. ``normalize_by``,
    ``missing``: see :func:`store_views`.
    """
    pv, info = opened_store_views(train, test, label, views, folds=folds, group=group, seed=seed, task=task,
                                  normalize_by=normalize_by, test_groups=test_groups, missing=missing)
    return run_probes(pv, info["task"], label, probes, linear=linear or LinearProbeConfig(seed=seed), knn=knn,
                      num_classes=info["num_classes"], class_names=info["class_names"], setup=info["setup"],
                      log=log)


def opened_store_views(train: Any, test: Any | None, label: str, views: Sequence[str] | None = None,
                       **kwargs: Any) -> tuple[list[ProbeView], dict[str, Any]]:
    """:func:`store_views` of stores given open or as paths (paths are opened here and closed before returning;
    the views hold arrays read from them)."""
    with contextlib.ExitStack() as stack:
        def opened(s: Any) -> Any:
            return stack.enter_context(FeatureStore(s)) if isinstance(s, (str, Path)) else s

        return store_views(opened(train), opened(test) if test is not None else None, label, views, **kwargs)


# ------------------------------------------------------------------------------------------ table
def _cell(result: ViewResult, key: str) -> str:
    value = result.metrics.get(key, float("nan"))
    if key not in result.std:
        return f"{value:.4f}"
    return f"{value:.4f} ± {result.std[key]:.4f}"


def format_table(results: ProbeResults) -> str:
    """A plain-text table: one row per (view, probe), the task's headline metrics as columns."""
    cols = COLUMNS[results.task]
    folds = results.setup.get("folds")
    split = f"{folds} folds by {results.setup.get('group')}" if folds else "train/test"
    # with folds both sizes are per-fold means (each row is tested once: n_test/fold x folds = all rows)
    sizes = ["n_train/fold", "n_test/fold"] if folds else ["n_train", "n_test"]
    header = ["view", "probe", *sizes] + [title for _, title in cols]
    body = [[r.view, r.probe, str(r.n_train), str(round(r.n_test / max(len(r.folds), 1)) if folds else r.n_test)]
            + [_cell(r, key) for key, _ in cols] for r in results.rows]
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(header))
    title = f"label {results.label!r} ({results.task}, {split})"
    skipped = [f"not probed: {view}: {reason}" for view, reason in results.not_probed.items()]
    return "\n".join([title, rule, line(header), rule, *[line(b) for b in body], rule, *skipped])
