"""Extraction: run trained encoders over a dataset and stream features into the HDF5 store.

Eval mode, no gradients, its own batch size. Resumable: the store writer reports the ids already written, and
only the remaining clips are encoded. Undecodable clips, and rows the corpus scan left out (e.g. a manifest row
with an unknown label), are skipped and listed in ``<out>.skipped.jsonl`` (rewritten per run).
Sharded (``ExtractOptions.shard_index``/``num_shards``): this process writes only its shard's store, see
:mod:`contrastive_mer.extract.shards`; :func:`contrastive_mer.store.merge.merge_shards` joins the shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, cast

import torch
from omegaconf import DictConfig

from contrastive_mer.config import to_dict, to_yaml
from contrastive_mer.data.datamodule import build_corpus
from contrastive_mer.data.dataset import SkipReport
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter
from contrastive_mer.data.sample import Batch
from contrastive_mer.encoders.base import ModalityEncoder
from contrastive_mer.errors import UserError
from contrastive_mer.experiment import config_for_checkpoint
from contrastive_mer.extract.encode import encode_records, resolve_device
from contrastive_mer.extract.labels import fill_missing_labels, label_specs
from contrastive_mer.extract.shards import resolve_shard, shard_attrs, shard_output, shard_records
from contrastive_mer.fusion import check_weights, fuse, fused_dim
from contrastive_mer.model.module import PairwiseContrastiveModule, load_module, random_init_like
from contrastive_mer.store.hdf5 import FeatureStoreWriter, LabelSpec
from contrastive_mer.utils import file_sha256

#: the provenance (``checkpoint_sha256`` attribute) of a store encoded by untrained encoders
UNTRAINED = "untrained"


@dataclass
class ExtractOptions:
    """What to compute and how."""

    batch_size: int = 64
    num_workers: int = 0
    fusion_modes: Sequence[str] = ("concat", "mean")
    #: modality -> weight of the ``weighted`` fusion mode (required by it; recorded in the store's attrs)
    fusion_weights: dict[str, float] | None = None
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


def open_store(module: PairwiseContrastiveModule, cfg: DictConfig, out: Path, opts: ExtractOptions,
               *, adapter: CorpusAdapter, records: Sequence[ClipRecord], checkpoint_sha256: str = "",
               attrs: dict[str, Any] | None = None) -> tuple[FeatureStoreWriter, dict[str, LabelSpec]]:
    """The (resumable) store writer of an extraction whose labels and groups ``records`` describe."""
    modalities = module.modalities
    unknown = [m for m in opts.sequences if m not in modalities]
    if unknown:
        raise ValueError(f"--sequences: unknown modality {unknown[0]!r}; the model has {modalities}")
    # nn.ModuleDict types its items as Module; build_encoder made each one a ModalityEncoder
    feature_dims = {m: cast(ModalityEncoder, module.encoders[m]).output_dim for m in modalities}
    proj_dim = module.cfg.model.head.output_dim
    fused_dims = {mode: fused_dim(mode, feature_dims, proj_dim, modalities=modalities) for mode in opts.fusion_modes}
    weights: dict[str, Any] = {}
    if "weighted" in opts.fusion_modes:  # fail before encoding anything; the store records the weights
        weights["fusion_weights"] = dict(zip(modalities, check_weights(opts.fusion_weights, modalities)))
    groups = sorted({g for r in records for g in r.groups})
    specs = label_specs(adapter, records)
    attrs = {"config": to_yaml(cfg), "checkpoint_sha256": checkpoint_sha256, "dataset": cfg.data.dataset,
             **weights, **opts.extra_attrs, **(attrs or {})}
    writer = FeatureStoreWriter(out, modalities, feature_dims, proj_dim, fused_dims=fused_dims,
                                sequences=list(opts.sequences), labels=specs, groups=groups, attrs=attrs,
                                sequence_dtype=opts.sequence_dtype, part_rows=opts.part_rows,
                                overwrite=opts.overwrite)
    return writer, specs


def refuse_non_finite(ids: Sequence[str], features: dict[str, torch.Tensor], projections: dict[str, torch.Tensor],
                      present: dict[str, torch.Tensor]) -> None:
    """A :class:`~contrastive_mer.errors.UserError` naming the first clip whose present features or projections
    hold NaN or inf (a store never gets such a row silently); absent rows are not looked at."""
    for kind, tensors in (("features", features), ("projections", projections)):
        for m, values in tensors.items():
            bad = (~torch.isfinite(values).all(dim=1)) & present[m].bool()
            if bool(bad.any()):
                rows = bad.nonzero(as_tuple=True)[0].tolist()
                raise UserError(f"clip {ids[rows[0]]!r}: the {m} encoder gave non-finite {kind} (NaN or inf) for "
                                f"{len(rows)} clip(s) of this batch; nothing of it was written (a NaN or inf in "
                                "that clip's input?)")


def encode_batch(module: PairwiseContrastiveModule, batch: Batch, specs: dict[str, LabelSpec],
                 opts: ExtractOptions, *, device: torch.device) -> dict[str, Any]:
    """Encode one non-empty batch: the keyword arguments of :meth:`FeatureStoreWriter.append`."""
    modalities = module.modalities
    batch = batch.to(device, non_blocking=True)
    outputs, projections = module(batch)
    features = {m: o.feature.float().cpu() for m, o in outputs.items()}
    projections = {m: p.float().cpu() for m, p in projections.items()}
    present = {m: batch.present[m].cpu() for m in modalities}
    refuse_non_finite(batch.ids, features, projections, present)
    fused = {mode: fuse(features, projections, present, mode=mode, weights=opts.fusion_weights,
                        modalities=modalities).numpy() for mode in opts.fusion_modes}
    seqs = {}
    for m in opts.sequences:
        o = outputs[m]
        if o.sequence is None:
            raise ValueError(f"--sequences: the {m} encoder has no frame-level output")
        lens = o.sequence_lengths.cpu().tolist()
        seqs[m] = [o.sequence[i, :n].float().cpu().numpy() if present[m][i] else None for i, n in enumerate(lens)]
    return {"ids": batch.ids,
            "labels": fill_missing_labels(batch.labels, specs, len(batch)),
            "groups": batch.groups, "features": {m: f.numpy() for m, f in features.items()},
            "projections": {m: p.numpy() for m, p in projections.items()},
            "present": {m: p.numpy() for m, p in present.items()}, "fused": fused, "sequences": seqs}


@torch.no_grad()
def write_batches(module: PairwiseContrastiveModule, batches: Iterable[Batch], writer: FeatureStoreWriter,
                  specs: dict[str, LabelSpec], *, opts: ExtractOptions, device: torch.device) -> Path:
    """Encode pre-collated ``batches`` into ``writer`` and finish the store (no skip report, no progress bar)."""
    for batch in batches:
        if len(batch):
            writer.append(**encode_batch(module, batch, specs, opts, device=device))
    return writer.finish()


@torch.no_grad()
def extract(module: PairwiseContrastiveModule, cfg: DictConfig, out: str | Path,
            options: ExtractOptions | None = None, *, adapter: CorpusAdapter | None = None,
            records: Sequence[ClipRecord] | None = None, checkpoint_sha256: str = "") -> Path:
    """Encode ``records`` (default: every record of the configured dataset) into the store at ``out``.

    With ``options.shard_index`` set, only this process's shard is encoded, into ``<stem>.shard-I-of-N<suffix>``
    (returned); the shard's labels and groups are still described from all ``records``.

    >>> import tempfile
    >>> from contrastive_mer.experiment import load_config
    >>> from contrastive_mer.configs import TINY_DEMO, config_path
    >>> from contrastive_mer.model.module import PairwiseContrastiveModule
    >>> from contrastive_mer.store.hdf5 import FeatureStore
    >>> cfg = load_config(config_path("demo.yaml"), TINY_DEMO)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = extract(PairwiseContrastiveModule(cfg), cfg, f"{tmp}/feats.h5",
    ...                   ExtractOptions(device="cpu", progress=False))
    ...     with FeatureStore(out) as store:
    ...         print(len(store), store.modalities, store.fused_modes(), store.view("audio").vectors.shape)
    36 ['audio', 'video', 'text'] ['concat', 'mean'] (36, 32)
    """
    opts = options or ExtractOptions()
    adapter = adapter or build_corpus(cfg)
    records = list(records if records is not None else adapter.records())
    if not records:
        raise ValueError(f"nothing to extract: dataset {cfg.data.dataset!r} lists no clips")
    shard = resolve_shard(opts.shard_index, opts.num_shards)
    out = shard_output(out, shard)
    writer, specs = open_store(module, cfg, out, opts, adapter=adapter, records=records,
                               checkpoint_sha256=checkpoint_sha256, attrs=shard_attrs(*shard) if shard else None)
    mine = shard_records(records, *shard) if shard else records
    done = writer.done_ids()
    todo = [r for r in mine if r.id not in done]
    device = resolve_device(opts.device)
    # rewritten per run: a resumed extraction retries every clip not in the store (those skipped before too), so
    # each clip still failing is listed once; the scan's skipped rows are listed by shard 0 only (merge concatenates)
    report = SkipReport(out.with_name(out.name + ".skipped.jsonl"), cfg.data.max_skip_fraction)
    if shard is None or shard[0] == 0:
        report.add_scan(getattr(adapter, "skipped", ()))
    report.start()
    try:
        for rows in encode_records(module, cfg, adapter, todo,
                                   encode=lambda b: encode_batch(module, b, specs, opts, device=device),
                                   batch_size=opts.batch_size, device=device, num_workers=opts.num_workers,
                                   report=report, seen=len(done),
                                   progress=f"extract -> {out.name}" if opts.progress else None):
            writer.append(**rows)
        path = writer.finish()
    finally:
        writer.close()  # the store's lock goes with this call, finished or not (what was flushed stays resumable)
    if report.total:
        print(f"[cmer extract] {report.summary()}")
    return path


def extract_from_checkpoint(checkpoint: str | Path, out: str | Path, config_path: str | Path | None = None,
                            overrides: Sequence[str] = (), *, options: ExtractOptions | None = None,
                            random_init: bool = False) -> Path:
    """What ``cmer extract`` does: load the checkpoint weights-only, build the dataset, extract.

    ``random_init``: encode with the checkpoint's architecture untrained instead
    (:func:`~contrastive_mer.model.module.random_init_like` of the merged config, the seed rule of
    ``cmer evaluate``'s random-init column); the store's ``checkpoint_sha256`` is then ``"untrained"``.

    >>> import tempfile, torch
    >>> from contrastive_mer.config import to_dict
    >>> from contrastive_mer.experiment import load_config
    >>> from contrastive_mer.configs import TINY_DEMO, config_path
    >>> from contrastive_mer.model.module import PairwiseContrastiveModule
    >>> from contrastive_mer.store.hdf5 import FeatureStore
    >>> cfg = load_config(config_path("demo.yaml"), TINY_DEMO)
    >>> module = PairwiseContrastiveModule(cfg)  # untrained: pretrain() writes such checkpoints
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": to_dict(cfg)}},
    ...                f"{tmp}/model.ckpt")
    ...     out = extract_from_checkpoint(f"{tmp}/model.ckpt", f"{tmp}/feats.h5",
    ...                                   options=ExtractOptions(device="cpu", progress=False))
    ...     with FeatureStore(out) as store:
    ...         print(len(store), store.attrs["checkpoint_sha256"] != "")
    36 True
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    module = load_module(str(checkpoint))
    cfg = config_for_checkpoint(to_dict(module.cfg), config_path, overrides)
    if random_init:  # the architecture only; the seed rule of cmer evaluate's random-init column
        return extract(random_init_like(cfg), cfg, out, options, checkpoint_sha256=UNTRAINED)
    return extract(module, cfg, out, options, checkpoint_sha256=file_sha256(checkpoint))
