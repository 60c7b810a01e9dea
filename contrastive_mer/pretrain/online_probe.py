"""The online probe: how well frozen features predict a label while pretraining runs (solo-learn style).

Every ``every_n_epochs`` validation epochs :class:`OnlineProbeCallback` encodes up to ``max_clips`` validation
clips (eval mode, no gradients), splits them into a probe-train and a probe-test half (group-disjoint by
``data.split_group`` when the clips hold two or more groups, else stratified by label), and runs the kNN and the
linear probe of :mod:`contrastive_mer.evaluation` on each modality's encoder features and on their
concatenation (``fused``, absent modalities as zeros, as ``fused/concat`` in a store). The scores are logged as
``online_probe/linear_<metric>`` and ``online_probe/knn_<metric>`` (fused) and
``online_probe/<modality>/{linear,knn}_<metric>`` (``acc`` for a class label, ``wa`` for a multi-label, ``mae``
for a float label), so they reach TensorBoard, ``history.json`` and the per-epoch line.

The probed rows are sorted by clip id. Under DDP every rank encodes its share of the validation clips (up to
``ceil(max_clips / world_size)``); the shares are gathered and merged (each clip once:
:mod:`contrastive_mer.pretrain.online_probe_rows`), rank 0 runs the probes and every rank logs rank 0's scores, so a
checkpoint monitor finds them on every rank, and one process and several ranks probe the same rows (when
``max_clips`` does not bind).

Labels only monitor: they never reach the loss, and the best checkpoint is chosen by ``val/loss`` unless the
config asks for an online-probe metric (``monitor.checkpoint``). The callback uses no random number generator
(the split takes its own seed), so a run trains exactly as it would without it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from contrastive_mer.data.splits import group_train_val_split
from contrastive_mer.evaluation.knn import KnnProbeConfig, knn_probe
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.evaluation.protocol import COLUMNS, infer_task, valid_label_rows
from contrastive_mer.fusion import fuse
from contrastive_mer.pretrain.online_probe_rows import ProbeRows, broadcast_scores, gather_rows, merge_rows

PREFIX = "online_probe"
MIN_ROWS = 4  # fewer labelled clips on either side of the split: no probe that epoch
MIN_PER_CLASS = 2  # fewer validation clips of a class: it cannot be on both sides of the split (a warning)


def thin_classes(labels: np.ndarray, num_classes: int | None = None) -> dict[int, int]:
    """Class code -> labelled clips, for the classes with fewer than ``MIN_PER_CLASS`` clips among ``labels``
    (a class below ``num_classes`` that none has counts 0); empty for a float or multi-label label."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        return {}
    codes = labels[labels >= 0].astype(np.int64)
    counts = np.bincount(codes, minlength=max(num_classes or 0, int(codes.max()) + 1 if codes.size else 0))
    return {c: int(k) for c, k in enumerate(counts) if k < MIN_PER_CLASS}


def probe_split(labels: np.ndarray, groups: np.ndarray | None, seed: int = 0,
                test_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray, str]:
    """``(train_idx, test_idx, how)``: group-disjoint when ``groups`` has two or more values (``how`` =
    ``group``), else stratified by class for a 1-D integer label (``stratified``) or a seeded random split
    (``random``). Indices are sorted."""
    n = len(labels)
    if groups is not None and len(set(np.asarray(groups).tolist())) >= 2:
        train, test = group_train_val_split(np.asarray(groups), test_fraction, seed)
        return train, test, "group"
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, dtype=bool)
    if labels.ndim == 1 and labels.dtype.kind in "iub":
        for c in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == c))
            is_test[rows[:int(round(test_fraction * len(rows)))]] = True  # a lone clip of a class trains
        how = "stratified"
    else:
        is_test[rng.permutation(n)[:int(round(test_fraction * n))]] = True
        how = "random"
    return np.flatnonzero(~is_test), np.flatnonzero(is_test), how


def probe_views(features: dict[str, np.ndarray], present: dict[str, np.ndarray]
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``view -> (X, usable rows)``: each modality's features where present, and ``fused`` (their
    concatenation in sorted modality order, absent modalities as zeros; usable where any is present)."""
    views = {m: (features[m], present[m]) for m in sorted(features)}
    if len(features) >= 2:
        fused = fuse(features, None, present, mode="concat", modalities=sorted(features))
        views["fused"] = (fused, np.any(np.stack([present[m] for m in features]), axis=0))
    return views


def online_probe_scores(features: dict[str, np.ndarray], present: dict[str, np.ndarray], labels: np.ndarray,
                        groups: np.ndarray | None, *, num_classes: int | None = None, seed: int = 0,
                        linear: LinearProbeConfig | None = None, knn: KnnProbeConfig | None = None
                        ) -> dict[str, float]:
    """The logged scores (see the module docstring) of one set of validation features. A view with fewer than
    ``MIN_ROWS`` labelled rows on either side of the split is left out."""
    task = infer_task(labels)
    key, short = COLUMNS[task][0]
    lin = replace(linear or LinearProbeConfig(seed=seed), task=task)
    kn = replace(knn or KnnProbeConfig(), task=task)
    labelled = valid_label_rows(labels)
    train, test, _ = probe_split(labels, groups, seed)
    out: dict[str, float] = {}
    for view, (X, usable) in probe_views(features, present).items():
        ok = usable & labelled
        tr, te = train[ok[train]], test[ok[test]]
        if len(tr) < MIN_ROWS or len(te) < MIN_ROWS:
            continue
        name = PREFIX if view == "fused" else f"{PREFIX}/{view}"
        g = None if groups is None else np.asarray(groups)[tr]
        g = g if g is not None and len(set(g.tolist())) >= 2 else None  # else: weight decay chosen per clip
        lr = linear_probe(X[tr], labels[tr], X[te], labels[te], lin, groups_train=g, num_classes=num_classes)
        kr = knn_probe(X[tr], labels[tr], X[te], labels[te], kn, num_classes=num_classes)
        assert lr.metrics is not None and kr.metrics is not None  # test labels were given
        out[f"{name}/linear_{short}"] = float(lr.metrics[key])
        out[f"{name}/knn_{short}"] = float(kr.metrics[key])
    return out


class OnlineProbeCallback(Callback):
    """See the module docstring. ``label``: the label to probe (None: ``emotion`` when present, else the first
    label); ``group``: the group the probe split is disjoint by."""

    def __init__(self, every_n_epochs: int, *, max_clips: int = 1024, label: str | None = None,
                 group: str = "speaker", seed: int = 0, weight_decays: list[float] | None = None,
                 k: int = 20):
        self.every, self.max_clips, self.label, self.group, self.seed = every_n_epochs, max_clips, label, group, seed
        self.linear = LinearProbeConfig(seed=seed)
        if weight_decays:
            self.linear = replace(self.linear, weight_decays=tuple(weight_decays))
        self.knn = KnnProbeConfig(k=k)
        self.warned: set[str] = set()
        self.rank_zero = True  # warnings are printed once, by rank 0
        self.probed: ProbeRows = ProbeRows()  # the merged rows of the last probe (every rank)
        self.scores: dict[str, float] = {}  # the scores of the last probe, as logged (every rank)
        self._reset(False)

    def _reset(self, active: bool, world_size: int = 1) -> None:
        """Start an epoch: collect (``active``) up to this rank's share of ``max_clips``, or nothing."""
        self.active = active
        self.cap = math.ceil(self.max_clips / max(world_size, 1))  # clips this rank may take
        self.ids: list[str] = []
        self.features: dict[str, list[np.ndarray]] = {}
        self.present: dict[str, list[np.ndarray]] = {}
        self.labels: list[np.ndarray] = []
        self.groups: list[str] = []
        self.seen: set[str] = set()  # clip ids taken this epoch: a two-window batch holds each clip twice
        self.count = 0

    def _warn(self, message: str) -> None:
        if self.rank_zero and message not in self.warned:
            self.warned.add(message)
            print(f"[cmer] warning: online probe: {message}", file=sys.stderr, flush=True)

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        due = self.every > 0 and (trainer.current_epoch + 1) % self.every == 0
        self.rank_zero = trainer.is_global_zero
        self._reset(due and not trainer.sanity_checking, trainer.world_size)

    def _label_name(self, batch: Any) -> str | None:
        if self.label is not None:
            return self.label if self.label in batch.labels else None
        return "emotion" if "emotion" in batch.labels else (sorted(batch.labels)[0] if batch.labels else None)

    def on_validation_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.active or self.count >= self.cap or len(batch) == 0:
            return
        name = self._label_name(batch)
        if name is None:
            self._warn(f"the validation clips have no label {self.label!r}" if self.label else
                       "the validation clips have no labels; nothing to probe")
            return
        self.label = name
        rows: list[int] = []  # the first row of each clip not taken yet (window 0 of a two-window batch)
        for i, sid in enumerate(batch.ids):
            if sid not in self.seen and len(rows) < self.cap - self.count:
                self.seen.add(sid)
                rows.append(i)
        if not rows:
            return
        with torch.no_grad():
            encoded = module.encode(batch)  # type: ignore[operator]
        index = torch.as_tensor(rows, dtype=torch.long)
        for m, out in encoded.items():
            self.features.setdefault(m, []).append(out.feature[index.to(out.feature.device)].float().cpu().numpy())
            present = batch.present[m]
            self.present.setdefault(m, []).append(present[index.to(present.device)].cpu().numpy().astype(bool))
        labels = batch.labels[name]
        self.labels.append(labels[index.to(labels.device)].cpu().numpy())
        groups = batch.groups.get(self.group, ["?"] * len(batch))
        self.groups.extend(str(groups[i]) for i in rows)
        self.ids.extend(str(batch.ids[i]) for i in rows)
        self.count += len(rows)

    def local_rows(self) -> ProbeRows:
        """The rows this rank collected this epoch, in loader order."""
        if not self.labels:
            return ProbeRows()
        return ProbeRows(list(self.ids), {m: np.concatenate(v) for m, v in self.features.items()},
                         {m: np.concatenate(v) for m, v in self.present.items()}, np.concatenate(self.labels),
                         list(self.groups))

    def probe(self, rows: ProbeRows, num_classes: int | None, epoch: int,
              class_names: list[str] | None = None) -> dict[str, float]:
        """The scores of merged ``rows`` (empty, with a warning, when the probe cannot run; a warning when a
        class has fewer than ``MIN_PER_CLASS`` clips)."""
        thin = thin_classes(rows.labels, num_classes) if len(rows) else {}
        if thin:
            names = class_names or []
            shown = ", ".join(f"{names[c] if c < len(names) else c} ({k})" for c, k in thin.items())
            self._warn(f"validation holds fewer than {MIN_PER_CLASS} clips of class(es) {shown} among its "
                       f"{len(rows)} probed clips: such a class cannot be on both sides of the probe split, so the "
                       "scores say little about it; give validation more clips (data.val_fraction, "
                       "data.val_groups, monitor.online_probe.max_clips)")
        try:
            scores = online_probe_scores(rows.features, rows.present, rows.labels, np.asarray(rows.groups),
                                         num_classes=num_classes, seed=self.seed, linear=self.linear, knn=self.knn)
        except ValueError as err:  # a monitor never stops training
            self._warn(f"epoch {epoch}: {err}")
            return {}
        if not scores:
            self._warn(f"fewer than {MIN_ROWS} labelled clips on a side of the probe split of {len(rows)} "
                       "validation clips; no probe")
        return scores

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.active:  # the same on every rank: the collectives below are reached by all or none
            return
        rows = merge_rows(gather_rows(self.local_rows()), self.max_clips)
        scores: dict[str, float] = {}
        failure: BaseException | None = None
        if trainer.is_global_zero and len(rows):
            adapter = getattr(getattr(trainer, "datamodule", None), "adapter", None)
            classes = (getattr(adapter, "label_names", None) or {}).get(self.label) or []
            num_classes = len(classes) if classes and infer_task(rows.labels) == "multiclass" else None
            try:
                scores = self.probe(rows, num_classes, trainer.current_epoch + 1, classes)
            except Exception as err:  # other ranks wait in the broadcast: release them, then fail
                failure = err
        scores = broadcast_scores(scores)
        if failure is not None:
            raise failure
        self.probed, self.scores = rows, scores
        # identical on every rank (broadcast); synced with max so that Lightning sees a cross-rank value
        for key, value in scores.items():
            module.log(key, value, on_step=False, on_epoch=True, sync_dist=trainer.world_size > 1, reduce_fx="max")
        self._reset(False)
