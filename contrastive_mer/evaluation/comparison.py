"""Pretrained encoders vs the same encoders at random init vs raw-input baselines, probed in one run.

Used by ``cmer demo`` (train speakers -> held-out speakers) and ``cmer evaluate`` (group-disjoint folds on one
corpus, e.g. RAVDESS actors). Every column is measured on the same clips with the same probes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
from contrastive_mer.data.dataset import MERDataset
from contrastive_mer.evaluation.baselines import RawFeatures, compute_raw_features
from contrastive_mer.evaluation.protocol import ProbeResults, ProbeView, kfold_views, probe_stores, run_probes
from contrastive_mer.extraction import ExtractOptions, extract
from contrastive_mer.module import PairwiseContrastiveModule

COLUMNS = ("pretrained", "random_init", "raw_input")


def random_init_like(cfg: DictConfig) -> PairwiseContrastiveModule:
    """The same architecture, untrained, seeded from the config."""
    pl.seed_everything(cfg.seed, verbose=False)
    return PairwiseContrastiveModule(cfg).eval()


def raw_features_for(cfg: DictConfig) -> RawFeatures:
    """Raw baseline features of every clip the configured dataset lists."""
    adapter = build_corpus(cfg)
    return compute_raw_features(MERDataset(adapter, adapter.records(), build_preprocessors(cfg), cache="none"))


def rows_by_view(results: ProbeResults, column: str) -> dict[str, dict[str, float]]:
    """``{view: {"<column>/<probe>": accuracy}}`` (``raw/`` prefixes dropped)."""
    out: dict[str, dict[str, float]] = {}
    for r in results.rows:
        view = r.view.split("/", 1)[1] if r.view.startswith("raw/") else r.view
        out.setdefault(view, {})[f"{column}/{r.probe}"] = r.metrics["accuracy"]
    return out


def merge_tables(results: dict[str, ProbeResults]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for column, res in results.items():
        for view, cells in rows_by_view(res, column).items():
            table.setdefault(view, {}).update(cells)
    return table


def format_comparison(table: dict[str, dict[str, float]], title: str,
                      columns: Sequence[str] = COLUMNS) -> str:
    """One line per view: ``linear / kNN`` accuracy (%) per column."""
    width = max(len(v) for v in table) + 2
    lines = [title, "view".ljust(width) + "".join(c.rjust(18) for c in columns)]
    for view, cells in table.items():
        line = view.ljust(width)
        for c in columns:
            lin, knn = cells.get(f"{c}/linear"), cells.get(f"{c}/knn")
            fmt = lambda v: "  -  " if v is None else f"{100 * v:5.1f}"  # noqa: E731
            line += f"{fmt(lin)} / {fmt(knn)}".rjust(18)
        lines.append(line)
    return "\n".join(lines)


def raw_views_split(train: RawFeatures, test: RawFeatures, label: str, group: str) -> list[ProbeView]:
    """Raw baseline views for a train/test protocol: each modality, and all modalities concatenated."""
    modalities = list(train.features)
    views = []
    for m in modalities:
        a, b = train.present[m], test.present[m]
        views.append(ProbeView(f"raw/{m}", train.features[m][a], train.labels[label][a], train.groups[group][a],
                               test.features[m][b], test.labels[label][b]))
    both = RawFeatures(train.ids + test.ids,
                       {m: np.concatenate([train.features[m], test.features[m]]) for m in modalities},
                       {m: np.concatenate([train.present[m], test.present[m]]) for m in modalities})
    fused = both.concat(modalities)
    n = len(train.ids)
    views.append(ProbeView("raw/fused", fused[:n], train.labels[label], train.groups[group], fused[n:],
                           test.labels[label]))
    return views


def raw_views_folds(raw: RawFeatures, label: str, group: str, folds: int, seed: int) -> list[ProbeView]:
    """Raw baseline views for group-disjoint folds (the probe standardises with training rows only)."""
    views = []
    y, g = raw.labels[label], raw.groups[group]
    for m in raw.features:
        p = raw.present[m]
        views += kfold_views(f"raw/{m}", raw.features[m][p], y[p], g[p], folds, seed)
    views += kfold_views("raw/fused", raw.concat(), y, g, folds, seed)
    return views


def evaluate_folds(cfg: DictConfig, trained: PairwiseContrastiveModule, out_dir: str | Path, *, label: str,
                   group: str, folds: int, probes: Sequence[str] = ("linear", "knn"), checkpoint_sha256: str = "",
                   fusion_modes: Sequence[str] = ("concat", "mean")) -> dict[str, Any]:
    """Group-disjoint K-fold probes of pretrained, random-init and raw-input features of one corpus."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opts = ExtractOptions(progress=True, overwrite=True, fusion_modes=tuple(fusion_modes))
    views = [*trained.modalities, *(f"fused/{m}" for m in fusion_modes)]
    results: dict[str, ProbeResults] = {}
    for column, module in (("pretrained", trained), ("random_init", random_init_like(cfg))):
        path = extract(module, cfg, out_dir / f"features-{column}.h5", opts,
                       checkpoint_sha256=checkpoint_sha256 if column == "pretrained" else "untrained")
        results[column] = probe_stores(path, label=label, views=views, folds=folds, group=group, probes=probes,
                                       seed=cfg.seed)
    raw = raw_features_for(cfg)
    task = results["pretrained"].task
    results["raw_input"] = run_probes(raw_views_folds(raw, label, group, folds, cfg.seed), task=task,
                                      label=label, probes=probes)
    table = merge_tables(results)
    text = format_comparison(table, f"{label}: {folds}-fold probes grouped by {group} (linear / kNN accuracy, %)")
    report = {"table": table, "probes": {k: v.to_dict() for k, v in results.items()}, "text": text}
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "evaluation.txt").write_text(text + "\n")
    return report
