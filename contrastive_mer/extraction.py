"""Extraction: run trained encoders over a dataset and stream features into the HDF5 store.

Eval mode, no gradients, its own batch size. Resumable: the store writer reports the ids already written, and
only the remaining clips are encoded. Undecodable clips are skipped and listed in ``<out>.skipped.jsonl``.
Sharded (``ExtractOptions.shard_index``/``num_shards``): this process writes only its shard's store, see
:mod:`contrastive_mer.extraction_parallel`; :func:`contrastive_mer.store.merge.merge_shards` joins the shards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from contrastive_mer.config import config_from_dict, load_config, to_dict, to_yaml
from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset, SkipReport
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter
from contrastive_mer.data.sample import Batch
from contrastive_mer.extraction_parallel import (
    local_rank_device, resolve_shard, shard_attrs, shard_output, shard_records,
)
from contrastive_mer.fusion import fuse, fused_dim
from contrastive_mer.module import PairwiseContrastiveModule, load_module
from contrastive_mer.store.hdf5 import FeatureStoreWriter, LabelSpec


@dataclass
class ExtractOptions:
    """What to compute and how."""

    batch_size: int = 64
    num_workers: int = 0
    fusion_modes: Sequence[str] = ("concat", "mean")
    sequences: Sequence[str] = ()
    sequence_dtype: str = "float16"
    device: str = "auto"
    part_rows: int = 256
    overwrite: bool = False
    progress: bool = True
    extra_attrs: dict[str, Any] = field(default_factory=dict)
    #: this process's shard: an index, "auto" (RANK under torchrun), or None for an unsharded extraction
    shard_index: int | str | None = None
    #: number of shards (with an integer ``shard_index``; "auto" takes WORLD_SIZE)
    num_shards: int | None = None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA when available (``cuda:<LOCAL_RANK>`` under torchrun), else CPU."""
    if device == "auto":
        return torch.device(local_rank_device() or "cuda") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def label_specs(adapter: CorpusAdapter, records: Sequence[ClipRecord]) -> dict[str, LabelSpec]:
    """Store label specs from the adapter's class names and the label values the records carry."""
    specs: dict[str, LabelSpec] = {}
    for r in records:
        for name, value in r.labels.items():
            if name in specs:
                continue
            names = adapter.label_names.get(name)
            if isinstance(value, (list, tuple, np.ndarray)):
                specs[name] = LabelSpec(tuple(names) if names else None, multi_label=True, dim=len(value))
            elif names is not None:
                specs[name] = LabelSpec(tuple(names))
            else:
                specs[name] = LabelSpec()
    return specs


def _batch_labels(batch_labels: dict[str, torch.Tensor], specs: dict[str, LabelSpec], n: int) -> dict[str, Any]:
    out = {}
    for name, spec in specs.items():
        if name in batch_labels:
            out[name] = batch_labels[name].numpy()
        elif spec.kind == "categorical":
            out[name] = np.full(n, -1, dtype=np.int64)
        else:
            out[name] = np.full((n, spec.width) if spec.width else n, np.nan, dtype=np.float32)
    return out


def open_store(module: PairwiseContrastiveModule, cfg: DictConfig, out: Path, opts: ExtractOptions,
               adapter: CorpusAdapter, records: Sequence[ClipRecord], checkpoint_sha256: str = "",
               attrs: dict[str, Any] | None = None) -> tuple[FeatureStoreWriter, dict[str, LabelSpec]]:
    """The (resumable) store writer of an extraction whose labels and groups ``records`` describe."""
    modalities = module.modalities
    unknown = [m for m in opts.sequences if m not in modalities]
    if unknown:
        raise ValueError(f"--sequences: unknown modality {unknown[0]!r}; the model has {modalities}")
    feature_dims = {m: module.encoders[m].output_dim for m in modalities}
    proj_dim = module.cfg.model.head.output_dim
    fused_dims = {mode: fused_dim(mode, feature_dims, proj_dim, modalities=modalities) for mode in opts.fusion_modes}
    groups = sorted({g for r in records for g in r.groups})
    specs = label_specs(adapter, records)
    attrs = {"config": to_yaml(cfg), "checkpoint_sha256": checkpoint_sha256, "dataset": cfg.data.dataset,
             **opts.extra_attrs, **(attrs or {})}
    writer = FeatureStoreWriter(out, modalities, feature_dims, proj_dim, fused_dims,
                                sequences=list(opts.sequences), labels=specs, groups=groups, attrs=attrs,
                                sequence_dtype=opts.sequence_dtype, part_rows=opts.part_rows,
                                overwrite=opts.overwrite)
    return writer, specs


def encode_batch(module: PairwiseContrastiveModule, batch: Batch, specs: dict[str, LabelSpec],
                 opts: ExtractOptions, device: torch.device) -> dict[str, Any]:
    """Encode one non-empty batch: the keyword arguments of :meth:`FeatureStoreWriter.append`."""
    modalities = module.modalities
    batch = batch.to(device, non_blocking=True)
    outputs, projections = module(batch)
    features = {m: o.feature.float().cpu() for m, o in outputs.items()}
    projections = {m: p.float().cpu() for m, p in projections.items()}
    present = {m: batch.present[m].cpu() for m in modalities}
    fused = {mode: fuse(features, projections, present, mode=mode, modalities=modalities).numpy()
             for mode in opts.fusion_modes}
    seqs = {}
    for m in opts.sequences:
        o = outputs[m]
        if o.sequence is None:
            raise ValueError(f"--sequences: the {m} encoder has no frame-level output")
        lens = o.sequence_lengths.cpu().tolist()
        seqs[m] = [o.sequence[i, :n].float().cpu().numpy() if present[m][i] else None for i, n in enumerate(lens)]
    return {"ids": batch.ids,
            "labels": _batch_labels({k: v.cpu() for k, v in batch.labels.items()}, specs, len(batch)),
            "groups": batch.groups, "features": {m: f.numpy() for m, f in features.items()},
            "projections": {m: p.numpy() for m, p in projections.items()},
            "present": {m: p.numpy() for m, p in present.items()}, "fused": fused, "sequences": seqs}


@torch.no_grad()
def write_batches(module: PairwiseContrastiveModule, batches: Iterable[Batch], writer: FeatureStoreWriter,
                  specs: dict[str, LabelSpec], opts: ExtractOptions, device: torch.device) -> Path:
    """Encode pre-collated ``batches`` into ``writer`` and finish the store (no skip report, no progress bar)."""
    for batch in batches:
        if len(batch):
            writer.append(**encode_batch(module, batch, specs, opts, device))
    return writer.finish()


@torch.no_grad()
def extract(module: PairwiseContrastiveModule, cfg: DictConfig, out: str | Path,
            options: ExtractOptions | None = None, adapter: CorpusAdapter | None = None,
            records: Sequence[ClipRecord] | None = None, checkpoint_sha256: str = "") -> Path:
    """Encode ``records`` (default: every record of the configured dataset) into the store at ``out``.

    With ``options.shard_index`` set, only this process's shard is encoded, into ``<stem>.shard-I-of-N<suffix>``
    (returned); the shard's labels and groups are still described from all ``records``.
    """
    opts = options or ExtractOptions()
    adapter = adapter or build_corpus(cfg)
    records = list(records if records is not None else adapter.records())
    if not records:
        raise ValueError(f"nothing to extract: dataset {cfg.data.dataset!r} lists no clips")
    shard = resolve_shard(opts.shard_index, opts.num_shards)
    out = shard_output(out, shard)
    writer, specs = open_store(module, cfg, out, opts, adapter, records, checkpoint_sha256,
                               shard_attrs(*shard) if shard else None)
    mine = shard_records(records, *shard) if shard else records
    done = writer.done_ids()
    todo = [r for r in mine if r.id not in done]
    device = resolve_device(opts.device)
    module = module.to(device).eval()
    preprocessors = build_preprocessors(cfg)
    dataset = MERDataset(adapter, todo, preprocessors, cache=cfg.data.cache if cfg.data.cache == "disk" else "none",
                         cache_dir=cfg.data.cache_dir)
    loader = DataLoader(dataset, batch_size=opts.batch_size, shuffle=False, num_workers=opts.num_workers,
                        collate_fn=Collator(preprocessors), pin_memory=device.type == "cuda")
    report = SkipReport(out.with_name(out.name + ".skipped.jsonl"), cfg.data.max_skip_fraction)
    seen = len(done)
    bar = tqdm(total=len(mine), initial=len(done), desc=f"extract -> {out.name}", disable=not opts.progress,
               unit="clip")
    for batch in loader:
        seen += len(batch) + len(batch.skipped)
        report.add(batch.skipped)
        report.check(seen)
        bar.update(len(batch) + len(batch.skipped))
        if len(batch) == 0:
            continue
        writer.append(**encode_batch(module, batch, specs, opts, device))
    bar.close()
    path = writer.finish()
    if report.entries:
        print(f"[cmer extract] {report.summary()}")
    return path


def extraction_config(checkpoint_config: dict[str, Any], config_path: str | Path | None,
                      overrides: Sequence[str]) -> DictConfig:
    """The model section always comes from the checkpoint; data settings from ``--config`` and overrides."""
    from omegaconf import OmegaConf

    from contrastive_mer.errors import UserError

    if any(o.startswith("model.") for o in overrides):
        raise UserError("model.* cannot be overridden at extraction: the checkpoint defines the model")
    base = to_dict(config_from_dict(checkpoint_config))
    if config_path is not None:
        given = to_dict(load_config(config_path))
        base = {**given, "model": base["model"]}
    merged = OmegaConf.merge(OmegaConf.create(base), OmegaConf.from_dotlist(list(overrides)))
    return config_from_dict(OmegaConf.to_container(merged))


def extract_from_checkpoint(checkpoint: str | Path, out: str | Path, config_path: str | Path | None = None,
                            overrides: Sequence[str] = (), options: ExtractOptions | None = None) -> Path:
    """What ``cmer extract`` does: load the checkpoint weights-only, build the dataset, extract."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    module = load_module(str(checkpoint))
    cfg = extraction_config(to_dict(module.cfg), config_path, overrides)
    return extract(module, cfg, out, options, checkpoint_sha256=file_sha256(checkpoint))
