"""Pretrained encoders vs the same encoders at random init vs raw-input baselines, probed in one run.

Used by ``cmer demo`` (train speakers -> held-out speakers) and ``cmer evaluate`` (group-disjoint folds on one
corpus, e.g. RAVDESS actors). Every column is measured on the same clips with the same probes.

Raw baselines are shown as they are and, with ``normalize_by`` (e.g. ``speaker``), standardised within each
speaker (``<view>@speaker``); standardisation statistics never include test rows: global statistics come from
the training rows of each fold, per-speaker ones from that speaker's own rows. The report names the strongest
raw baseline and the gap between it and the pretrained fused features.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig

from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
from contrastive_mer.data.dataset import MERDataset, uses_disk
from contrastive_mer.data.normalization import standardise_present, zscore_by_group
from contrastive_mer.data.splits import group_kfold, holdout_split
from contrastive_mer.evaluation.baselines import RawFeatures, compute_raw_features, with_audio_baselines
from contrastive_mer.evaluation.chance import report_lines
from contrastive_mer.evaluation.linear import LinearProbeConfig
from contrastive_mer.evaluation.metrics import PRIMARY_METRIC
from contrastive_mer.evaluation.protocol import ProbeResults, ProbeView, probe_stores, run_probes, valid_label_rows
from contrastive_mer.extract.extraction import UNTRAINED, ExtractOptions, extract
from contrastive_mer.model.module import PairwiseContrastiveModule, random_init_like
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.utils import write_text_atomic

# random_init_like (imported above) lives in model/module.py, where cmer extract --random-init finds it too; it
# stays importable from here

COLUMNS = ("pretrained", "random_init", "raw_input")
FUSED_PLUS_RAW = "fused+raw"


def raw_features_for(cfg: DictConfig, *, audio_baselines: bool = False,
                     keys: Sequence[str] | None = None) -> RawFeatures:
    """Raw baseline features (inputs as they are, without ``data.normalize``) of every clip the configured
    dataset lists; ``audio_baselines`` adds eGeMAPS functionals and log-mel statistics of the audio
    (:func:`~contrastive_mer.evaluation.baselines.with_audio_baselines`); ``keys`` keeps only those raw
    features (see :func:`raw_keys_for_views`)."""
    adapter = build_corpus(cfg)
    preps = build_preprocessors(cfg)
    if audio_baselines:
        preps = with_audio_baselines(preps)
    if keys is not None:
        preps = {k: p for k, p in preps.items() if k in keys}
    cache = "disk" if uses_disk(cfg.data.cache) else "none"
    return compute_raw_features(MERDataset(adapter, adapter.records(), preps, cache=cache,
                                           cache_dir=cfg.data.cache_dir))


def rows_by_view(results: ProbeResults, column: str) -> dict[str, dict[str, float]]:
    """``{view: {"<column>/<probe>": primary metric}}`` (``raw/`` prefixes dropped)."""
    key = PRIMARY_METRIC[results.task]
    out: dict[str, dict[str, float]] = {}
    for r in results.rows:
        view = r.view.split("/", 1)[1] if r.view.startswith("raw/") else r.view
        out.setdefault(view, {})[f"{column}/{r.probe}"] = r.metrics[key]
        if key in r.std:
            out[view][f"{column}/{r.probe}/std"] = r.std[key]
    return out


def merge_tables(results: dict[str, ProbeResults]) -> dict[str, dict[str, float]]:
    """One ``{view: {"<column>/<probe>[/std]": value}}`` table from several columns' results."""
    table: dict[str, dict[str, float]] = {}
    for column, res in results.items():
        for view, cells in rows_by_view(res, column).items():
            table.setdefault(view, {}).update(cells)
    return table


def format_comparison(table: dict[str, dict[str, float]], title: str, columns: Sequence[str] = COLUMNS,
                      *, percent: bool = True) -> str:
    """One line per view: ``linear [± sd] / kNN`` per column (``percent``: values x 100)."""
    scale = 100.0 if percent else 1.0
    with_sd = any(k.endswith("/std") for cells in table.values() for k in cells)
    width = max(len(v) for v in table) + 2
    cell_width = 22 if with_sd else 18

    def fmt(v: float | None) -> str:
        return "  -  " if v is None else f"{scale * v:5.1f}" if percent else f"{v:6.3f}"

    lines = [title, "view".ljust(width) + "".join(c.rjust(cell_width) for c in columns)]
    for view, cells in table.items():
        line = view.ljust(width)
        for c in columns:
            lin, sd, knn = cells.get(f"{c}/linear"), cells.get(f"{c}/linear/std"), cells.get(f"{c}/knn")
            text = fmt(lin) + (f" ±{scale * sd:4.1f}" if sd is not None and lin is not None else "")
            line += f"{text} / {fmt(knn)}".rjust(cell_width)
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ raw views
def _by_group(x: np.ndarray, present: np.ndarray, groups: np.ndarray, side: np.ndarray) -> np.ndarray:
    """``x`` standardised within each group, separately on each side of a split (``side``: True rows and
    False rows), so that no statistic mixes training and test rows; absent rows 0."""
    out = np.zeros_like(x, dtype=np.float32)
    for part in (side, ~side):
        rows = present & part
        if rows.any():
            out[rows] = zscore_by_group(x[rows], groups[rows])
    return out


def _fold_raw_views(raw: RawFeatures, y: np.ndarray, groups: np.ndarray, train: np.ndarray, *, test: np.ndarray,
                    fold: int, normalize_by: str | None, norm_groups: np.ndarray | None) -> list[ProbeView]:
    """Raw views of one split: each feature, every pair of them (when there are three or more) and all of
    them concatenated, as is and per group."""
    n = len(raw.ids)
    is_train = np.zeros(n, dtype=bool)
    is_train[train] = True
    ok = np.zeros(n, dtype=bool)
    ok[train] = ok[test] = True
    ok &= valid_label_rows(y)
    names = list(raw.features)
    ids = np.asarray(raw.ids, dtype=object)
    variants: list[tuple[str, dict[str, np.ndarray]]] = [
        ("", {m: standardise_present(raw.features[m], raw.present[m], is_train) for m in names})]
    if normalize_by is not None and norm_groups is not None:
        variants.append((f"@{normalize_by}", {m: _by_group(raw.features[m], raw.present[m], norm_groups, is_train)
                                              for m in names}))
    views = []
    for suffix, feats in variants:
        for m in names:
            rows = raw.present[m] & ok
            tr, te = np.flatnonzero(rows & is_train), np.flatnonzero(rows & ~is_train)
            views.append(ProbeView(f"raw/{m}{suffix}", feats[m][tr], y[tr], groups[tr], feats[m][te], y[te], fold,
                                   ids[tr]))
        combos = [(f"raw/{a}+{b}", [a, b]) for i, a in enumerate(names) for b in names[i + 1:]] \
            if len(names) > 2 else []
        combos += [("raw/fused", names)] if len(names) > 1 else []
        tr, te = np.flatnonzero(ok & is_train), np.flatnonzero(ok & ~is_train)
        for name, parts in combos:
            fused = np.concatenate([feats[m] for m in parts], axis=1)
            views.append(ProbeView(f"{name}{suffix}", fused[tr], y[tr], groups[tr], fused[te], y[te], fold, ids[tr]))
    return views


def raw_views_split(train: RawFeatures, test: RawFeatures, label: str, group: str,
                    *, normalize_by: str | None = None) -> list[ProbeView]:
    """Raw baseline views for a train/test protocol: each modality, and all modalities concatenated
    (standardised with training rows only; with ``normalize_by`` also within each group)."""
    names = list(train.features)
    both = RawFeatures(train.ids + test.ids,
                       {m: np.concatenate([train.features[m], test.features[m]]) for m in names},
                       {m: np.concatenate([train.present[m], test.present[m]]) for m in names})
    n, total = len(train.ids), len(train.ids) + len(test.ids)
    y = np.concatenate([train.labels[label], test.labels[label]])
    groups = np.concatenate([train.groups[group], test.groups[group]])
    norm = None if normalize_by is None else np.concatenate([train.groups[normalize_by],
                                                             test.groups[normalize_by]])
    return _fold_raw_views(both, y, groups, np.arange(n), test=np.arange(n, total), fold=0,
                           normalize_by=normalize_by, norm_groups=norm)


def make_splits(groups: np.ndarray, folds: int, seed: int,
                test_groups: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group-disjoint folds, or the one split of ``test_groups`` against the rest when it is given."""
    return holdout_split(groups, test_groups) if test_groups else group_kfold(groups, folds, seed)


def raw_views_folds(raw: RawFeatures, label: str, group: str, folds: int, *, seed: int,
                    normalize_by: str | None = None, test_groups: Sequence[str] | None = None) -> list[ProbeView]:
    """Raw baseline views for group-disjoint folds (the same folds as the stores' for the same rows), or for
    the split of ``test_groups`` against the other groups."""
    y, g = raw.labels[label], np.asarray(raw.groups[group])
    norm = None if normalize_by is None else np.asarray(raw.groups[normalize_by])
    labelled = np.flatnonzero(valid_label_rows(y))
    views: list[ProbeView] = []
    for i, (tr, te) in enumerate(make_splits(g[labelled], folds, seed, test_groups)):
        views += _fold_raw_views(raw, y, g, labelled[tr], test=labelled[te], fold=i, normalize_by=normalize_by,
                                 norm_groups=norm)
    return views


def raw_views_missing(raw: RawFeatures, label: str, group: str, folds: int, *, seed: int,
                      normalize_by: str | None, test_groups: Sequence[str] | None, masked: Sequence[str],
                      lacking_ids: set[str] | None) -> list[ProbeView]:
    """:func:`raw_views_folds` with a modality missing at test time: with ``lacking_ids`` only those test clips
    (the ones that lack it); otherwise the raw features ``masked`` (the modality's, and those computed from the
    same input) are absent on every test row (standardised, an absent feature is zeros). Training rows as they
    are; views or folds without a test row are left out."""
    y, g = raw.labels[label], np.asarray(raw.groups[group])
    norm = None if normalize_by is None else np.asarray(raw.groups[normalize_by])
    labelled = np.flatnonzero(valid_label_rows(y))
    views: list[ProbeView] = []
    for i, (tr, te) in enumerate(make_splits(g[labelled], folds, seed, test_groups)):
        tr, te = labelled[tr], labelled[te]
        fold_raw = raw
        if lacking_ids is not None:
            te = te[np.array([raw.ids[r] in lacking_ids for r in te], dtype=bool)]
        else:
            present = {m: p.copy() for m, p in raw.present.items()}
            for m in masked:
                present[m][te] = False
            fold_raw = RawFeatures(raw.ids, raw.features, present, raw.labels, raw.groups)
        if len(te):
            views += [v for v in _fold_raw_views(fold_raw, y, g, tr, test=te, fold=i, normalize_by=normalize_by,
                                                  norm_groups=norm) if len(v.X_test)]
    return views


def raw_keys_of(cfg: DictConfig, modality: str, audio_baselines: bool) -> list[str]:
    """The raw baseline features computed from ``modality``'s input (its own, and eGeMAPS / log-mel statistics
    when they come from the same input)."""
    preps = build_preprocessors(cfg)
    if audio_baselines:
        preps = with_audio_baselines(preps)
    source = {k: getattr(p, "source", None) or k for k, p in preps.items()}
    want = source.get(modality, modality)
    return [k for k, src in source.items() if k == modality or src == want]


def fused_plus_raw_views(store_path: str | Path, raw: RawFeatures, label: str, group: str, *, folds: int, seed: int,
                         normalize_by: str | None, mode: str = "concat",
                         test_groups: Sequence[str] | None = None) -> list[ProbeView]:
    """Pretrained ``fused/<mode>`` features side by side with every raw feature (rows matched by id), per fold:
    does pretraining add something on top of what a user already has?"""
    with FeatureStore(store_path) as store:
        ids = list(store.ids)
        fused = store.view(f"fused/{mode}").vectors
    where = {i: k for k, i in enumerate(raw.ids)}
    keep = [k for k, i in enumerate(ids) if i in where]
    rows = np.array([where[ids[k]] for k in keep], dtype=np.int64)
    sub = RawFeatures([raw.ids[r] for r in rows], {m: x[rows] for m, x in raw.features.items()},
                      {m: p[rows] for m, p in raw.present.items()},
                      {k: v[rows] for k, v in raw.labels.items()}, {k: v[rows] for k, v in raw.groups.items()})
    sub.features = {"pretrained": fused[keep], **sub.features}
    sub.present = {"pretrained": np.ones(len(keep), dtype=bool), **sub.present}
    views = raw_views_folds(sub, label, group, folds, seed=seed, normalize_by=normalize_by, test_groups=test_groups)
    wanted = "raw/fused" + (f"@{normalize_by}" if normalize_by else "")
    name = f"fused/{mode}+raw" + (f"@{normalize_by}" if normalize_by else "")
    return [ProbeView(name, v.X_train, v.y_train, v.groups_train, v.X_test, v.y_test, v.fold, v.ids_train)
            for v in views if v.name == wanted]


# ------------------------------------------------------------------------------------------ report
def strongest(table: dict[str, dict[str, float]], column: str, task: str) -> tuple[str, float] | None:
    """The view with the best linear-probe value in ``column`` (higher is better, MAE lower)."""
    cells = [(v, c[f"{column}/linear"]) for v, c in table.items() if f"{column}/linear" in c]
    if not cells:
        return None
    return (min if task == "regression" else max)(cells, key=lambda vc: vc[1])


def summary_lines(table: dict[str, dict[str, float]], task: str, headline: str) -> list[str]:
    """The strongest raw baseline, the headline pretrained view, and the gap between them."""
    best = strongest(table, "raw_input", task)
    cells = table.get(headline, {})
    if best is None or "pretrained/linear" not in cells:
        return []
    scale, unit = (1.0, "") if task == "regression" else (100.0, " points")
    mine = cells["pretrained/linear"]
    gap = (best[1] - mine) if task == "regression" else (mine - best[1])
    sd = cells.get("pretrained/linear/std")
    sd_text = f" ± {scale * sd:.1f}" if sd is not None else ""
    return [f"strongest raw baseline: {best[0]} {scale * best[1]:.1f} (linear probe)",
            f"pretrained {headline}: {scale * mine:.1f}{sd_text}; "
            f"{'ahead of' if gap >= 0 else 'behind'} the strongest baseline by {abs(scale * gap):.1f}{unit}"]


def raw_keys_for_views(cfg: DictConfig, views: Sequence[str] | None, audio_baselines: bool) -> list[str] | None:
    """The raw baseline features that match ``views`` (``--modalities``): those computed from the input of each
    modality named (``audio``, ``features/audio``, ``projections/audio``); None (every raw feature) when no
    view names a modality (only fused views, or no ``views``)."""
    modalities = list(cfg.model.modalities)
    named = [v.split("/", 1)[1] if v.startswith(("features/", "projections/")) else v for v in views or ()]
    chosen = [m for m in modalities if m in named]
    if not chosen:
        return None
    return list(dict.fromkeys(k for m in chosen for k in raw_keys_of(cfg, m, audio_baselines)))


def _has_label(value: Any) -> bool:
    """Whether a record's label value is there (not None, NaN, an empty string or a negative code)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return bool(np.isfinite(value)) and not (isinstance(value, (int, np.integer)) and value < 0)
    return True


def check_folds(cfg: DictConfig, group: str, folds: int, test_groups: Sequence[str] | None = None,
                *, label: str | None = None, views: Sequence[str] | None = None) -> dict[str, str]:
    """Fail before any extraction when the corpus cannot make the folds (or the held-out split); with ``label``,
    also check every modality view (those ``views`` names, or all): returns view -> why it will not be probed
    (a fold where no labelled clip holding that modality is on the training or the test side), counted from
    the corpus's records, and fails when that is every view asked for."""
    records = build_corpus(cfg).records()
    kept = [r for r in records if r.sources]
    groups = [r.groups.get(group) for r in kept]
    if any(g is None for g in groups):
        raise ValueError(f"--group {group!r}: some clips have no such group")
    splits = make_splits(np.asarray(groups, dtype=object), folds, cfg.seed, test_groups)
    if label is None:
        return {}
    labelled = np.array([_has_label(r.labels.get(label)) for r in kept], dtype=bool)
    if not labelled.any():
        raise ValueError(f"--label {label!r}: no clip of the corpus has this label")
    preps = build_preprocessors(cfg)
    modalities = list(cfg.model.modalities)
    named = [v.split("/", 1)[1] if v.startswith(("features/", "projections/")) else v for v in views or modalities]
    chosen = [m for m in modalities if m in named]
    problems: dict[str, str] = {}
    for m in chosen:
        source = getattr(preps.get(m), "source", None) or m
        holds = labelled & np.array([r.sources.get(source) is not None for r in kept], dtype=bool)
        for i, (tr, te) in enumerate(splits):
            n_tr, n_te = int(holds[tr].sum()), int(holds[te].sum())
            if n_tr == 0 or n_te == 0:
                problems[m] = f"fold {i} has {n_tr} training and {n_te} test clips holding {m} with a {label!r} label"
                break
    if views and problems and len(problems) == len(named):
        raise ValueError("no view could be probed: " + "; ".join(f"{k}: {v}" for k, v in problems.items()))
    return problems


def evaluate_folds(cfg: DictConfig, trained: PairwiseContrastiveModule, out_dir: str | Path, *, label: str,
                   group: str, folds: int, probes: Sequence[str] = ("linear", "knn"), checkpoint_sha256: str = "",
                   fusion_modes: Sequence[str] = ("concat", "mean"), normalize_by: str | None = None,
                   views: Sequence[str] | None = None, linear: LinearProbeConfig | None = None,
                   audio_baselines: bool = True, test_groups: Sequence[str] | None = None,
                   columns: Sequence[str] = COLUMNS, labels_per_class: Sequence[int] | None = None,
                   draws: int = 5, missing: str | None = None, transductive: bool = False,
                   plot_views: Sequence[str] | None = None,
                   few_linear: LinearProbeConfig | None = None) -> dict[str, Any]:
    """Group-disjoint K-fold probes of pretrained, random-init and raw-input features of one corpus.

    ``normalize_by`` adds every view standardised within each such group (``<view>@<group>``) and the view
    ``fused/<mode>+raw`` (pretrained fused features beside the raw ones). ``views`` restricts the pretrained and
    random-init views (default: every modality and ``fused/<mode>`` for each fusion mode). ``test_groups``
    replaces the folds by one split: those groups (e.g. held-out actors) against the others. ``columns`` drops
    the random-init or raw-input columns (e.g. for further pretraining seeds, where they do not change).

    ``labels_per_class`` (K values) adds label-efficiency tables: every column's probes fitted on K labelled
    clips per class of each fold's training rows, ``draws`` draws, the same clips for every column and view
    (:mod:`~contrastive_mer.evaluation.label_efficiency`), and ``label_efficiency.png`` (the headline view and
    ``plot_views``). ``missing`` (a modality) tests without it (:mod:`~contrastive_mer.evaluation.missing`; the
    raw column the same way). ``transductive`` declares that pretraining saw the test groups' unlabelled clips:
    recorded in the report and printed at its top.
    """
    from contrastive_mer.evaluation.label_efficiency import (
        LabelEfficiencyResults,
        format_label_efficiency,
        label_efficiency,
        label_efficiency_stores,
    )

    for view, reason in check_folds(cfg, group, folds, test_groups, label=label, views=views).items():
        print(f"[cmer evaluate] warning: view {view!r} will not be probed: {reason}", file=sys.stderr, flush=True)
    linear = linear or LinearProbeConfig(seed=cfg.seed)
    few_linear = few_linear or linear
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opts = ExtractOptions(progress=True, overwrite=True, fusion_modes=tuple(fusion_modes))
    names = list(views) if views else [*trained.modalities, *(f"fused/{m}" for m in fusion_modes)]
    norms = [None] + ([normalize_by] if normalize_by else [])
    results: dict[str, ProbeResults] = {}
    efficiency: dict[str, LabelEfficiencyResults] = {}
    pools = None
    paths: dict[str, Path] = {}
    split_args: dict[str, Any] = dict(folds=None if test_groups else folds, group=group, seed=cfg.seed,
                                      test_groups=test_groups, missing=missing)
    models = [("pretrained", lambda: trained), ("random_init", lambda: random_init_like(cfg))]
    for column, make in ((c, m) for c, m in models if c == "pretrained" or c in columns):
        module = make()
        paths[column] = extract(module, cfg, out_dir / f"features-{column}.h5", opts,
                                checkpoint_sha256=checkpoint_sha256 if column == "pretrained" else UNTRAINED)
        for norm in norms:
            res = probe_stores(paths[column], label=label, views=names, probes=probes, linear=linear,
                               normalize_by=norm, **split_args)
            for row in res.rows:
                row.view += f"@{norm}" if norm else ""
            results[column] = res if column not in results else _joined(results[column], res)
            if labels_per_class:
                eff = label_efficiency_stores(paths[column], label=label, ks=labels_per_class, draws=draws,
                                              views=names, probes=probes, linear=few_linear, normalize_by=norm,
                                              pools=pools, **split_args)
                pools = pools or eff.pools  # the pretrained store's pools: the same draws for every column
                for erow in eff.rows:
                    erow.view += f"@{norm}" if norm else ""
                efficiency[column] = eff if column not in efficiency else _joined_efficiency(efficiency[column], eff)
    raw = raw_features_for(cfg, audio_baselines=audio_baselines,
                           keys=raw_keys_for_views(cfg, views, audio_baselines))
    task = results["pretrained"].task
    missing_info = results["pretrained"].setup.get("missing")
    if "raw_input" in columns:
        if missing is not None:
            lacking = None
            if missing_info and missing_info["mode"] == "lacking":
                with FeatureStore(paths["pretrained"]) as store:
                    lacking = {str(i) for i, p in zip(store.ids, store.present(missing)) if not p}
            raw_views = raw_views_missing(raw, label, group, folds, seed=cfg.seed, normalize_by=normalize_by,
                                          test_groups=test_groups,
                                          masked=raw_keys_of(cfg, missing, audio_baselines), lacking_ids=lacking)
        else:
            raw_views = raw_views_folds(raw, label, group, folds, seed=cfg.seed, normalize_by=normalize_by,
                                        test_groups=test_groups)
        results["raw_input"] = run_probes(raw_views, task=task, label=label, probes=probes, linear=linear)
        if labels_per_class:
            names_of = results["pretrained"].class_names
            efficiency["raw_input"] = label_efficiency(
                raw_views, labels_per_class, draws, seed=cfg.seed, task=task, label=label, probes=probes,
                linear=few_linear, num_classes=len(names_of) if names_of else None, class_names=names_of, pools=pools)
    if "concat" in fusion_modes and missing is None:
        extra = fused_plus_raw_views(paths["pretrained"], raw, label, group, folds=folds, seed=cfg.seed,
                                     normalize_by=normalize_by, test_groups=test_groups)
        results["pretrained"] = _joined(results["pretrained"],
                                        run_probes(extra, task=task, label=label, probes=probes, linear=linear))
    table = merge_tables(results)
    headline = f"fused/{fusion_modes[0]}" + (f"@{normalize_by}" if normalize_by else "") if fusion_modes else ""
    metric = PRIMARY_METRIC[task]
    split = f"test {group}s {', '.join(test_groups)}" if test_groups else f"{folds}-fold probes grouped by {group}"
    title = f"{label}: {split} (linear ± sd over folds / kNN, {metric}"
    text = format_comparison(table, title + (", %)" if task != "regression" else ")"),
                             percent=task != "regression")
    head = [TRANSDUCTIVE_LINE] if transductive else []
    if missing_info:
        head.append(f"missing {missing}: {missing_info['text']}")
    not_probed = {f"{column} {view.removeprefix('raw/')}": reason for column, res in results.items()
                  for view, reason in res.not_probed.items()}  # views named as in the table
    context = report_lines(results["pretrained"], headline)  # chance level and rows per fold
    text = "\n".join([*head, text, *summary_lines(table, task, headline),
                      *(f"not probed: {view}: {reason}" for view, reason in not_probed.items()), *context])
    report: dict[str, Any] = {
        "transductive": transductive, "missing": missing_info, "not_probed": not_probed, "table": table,
        "task": task, "metric": metric, "context": context,
        "headline": headline, "strongest_baseline": strongest(table, "raw_input", task),
        "probes": {k: v.to_dict() for k, v in results.items()}}
    if efficiency:
        decays = list(few_linear.weight_decays)
        rule = (f"weight decay fixed at {decays[0]:g}" if len(decays) == 1 else
                "weight decay chosen on group-disjoint validation clips among the drawn ones")
        text += "\n\n" + f"K labelled clips per class (linear probe: {rule})\n" + format_label_efficiency(efficiency)
        report["label_efficiency"] = {k: v.to_dict() for k, v in efficiency.items()}
        report["label_efficiency_weight_decays"] = decays
        from contrastive_mer.evaluation.plots import plot_label_efficiency

        shown = [headline, *(v for v in (plot_views or []) if v != headline)]
        report["label_efficiency_plot"] = plot_label_efficiency(efficiency, shown, out_dir / "label_efficiency.png")
    report["text"] = text
    write_text_atomic(out_dir / "evaluation.json", json.dumps(report, indent=1, default=str))
    write_text_atomic(out_dir / "evaluation.txt", text + "\n")
    return report


#: the first line of a transductive run's report
TRANSDUCTIVE_LINE = "transductive: the pretraining set held the test speakers' unlabelled clips"


def pretraining_overlap(checkpoint: str | Path, cfg: DictConfig, group: str,
                        test_groups: Sequence[str]) -> tuple[int, int] | None:
    """``(test clips the pretraining run listed, test clips)``: the clips of ``test_groups`` (by ``group``) that
    the checkpoint's run folder lists in its ``split.json`` (training or validation part); ``None`` when the
    checkpoint has no run folder with a ``split.json`` (nothing to tell)."""
    split_path = Path(checkpoint).resolve().parent.parent / "split.json"
    if not split_path.is_file():
        return None
    try:
        split = json.loads(split_path.read_text(encoding="utf-8"))
        seen = {str(i) for part in ("train", "val") for i in split.get(part, [])}
    except (ValueError, AttributeError, TypeError):
        return None
    wanted = {str(t) for t in test_groups}
    test_ids = [r.id for r in build_corpus(cfg).records() if str(r.groups.get(group)) in wanted]
    return sum(i in seen for i in test_ids), len(test_ids)


def _joined(a: ProbeResults, b: ProbeResults) -> ProbeResults:
    return ProbeResults(a.task, a.label, a.rows + b.rows, a.setup, a.class_names, {**a.not_probed, **b.not_probed})


def _joined_efficiency(a: Any, b: Any) -> Any:
    import dataclasses

    return dataclasses.replace(a, rows=a.rows + b.rows, notes=list(dict.fromkeys(a.notes + b.notes)))
