"""What ``cmer frontend-export`` does, usable from Python: :func:`export_frontend`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from tqdm.auto import tqdm

from contrastive_mer.config import to_dict, to_yaml
from contrastive_mer.data.dataset import SkipReport
from contrastive_mer.errors import UserError
from contrastive_mer.extract.encode import resolve_device
from contrastive_mer.extract.labels import label_specs, store_label_specs
from contrastive_mer.frontend.config import FUSED, FrontEndConfig
from contrastive_mer.frontend.export import export_npy, write_tokens
from contrastive_mer.frontend.front_end import FrontEnd, encoder_source_dims
from contrastive_mer.frontend.inputs import dataset_config, dataset_records, load_frontend_yaml, source_batches
from contrastive_mer.frontend.sources import SourceBatch, StoreSources
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.utils import file_sha256


@dataclass
class ExportRequest:
    """Arguments of :func:`export_frontend` (the CLI options)."""

    checkpoint: str
    out: str
    config: str | None = None
    overrides: Sequence[str] = ()
    projector: str | None = None
    features: str | None = None
    npy_dir: str | None = None
    name: str = "cmer"
    batch_size: int = 32
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True


def _frontend_config(section: dict[str, Any]) -> FrontEndConfig:
    # without a projector only the source settings matter; llm_hidden is then unused (any valid value)
    try:
        return FrontEndConfig.from_dict({"llm_hidden": 1, **section})
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None


def _chunks(sources: StoreSources, size: int) -> Iterator[SourceBatch]:
    for start in range(0, len(sources), size):
        yield sources(range(start, min(start + size, len(sources))))


def export_frontend(req: ExportRequest) -> tuple[Path, dict[str, int]]:
    """Encode a dataset (or read a feature store), project with the saved front end when ``projector`` is
    given, write the token store and (with ``npy_dir``) the MER-style ``.npy`` files."""
    ckpt = Path(req.checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    yaml = load_frontend_yaml(req.config, req.overrides)
    sha = file_sha256(ckpt)
    device = resolve_device(req.device)
    front: FrontEnd | None = None
    if req.projector is not None:
        front = FrontEnd.load(req.projector, encoder_ckpt=ckpt)
        fcfg = front.config
        section = yaml.get("frontend") or {}
        differ = sorted(k for k, v in section.items() if getattr(fcfg, k, None) != v)
        if differ:
            print(f"[cmer frontend-export] note: the front-end settings saved in {req.projector} are used; "
                  f"the config's frontend.{{{','.join(differ)}}} are ignored", file=sys.stderr)
        module = front.encoder
        dims = {s: fcfg.llm_hidden for s in front.source_dims}
    else:
        from contrastive_mer.model.module import load_module

        fcfg = _frontend_config(yaml.get("frontend") or {})
        module = load_module(str(ckpt))
        dims = encoder_source_dims(module, fcfg)
    assert module is not None
    modalities = [s for s in dims if s != FUSED]
    attrs = {"checkpoint_sha256": sha, "frontend_config": fcfg.to_dict()}
    if req.projector is not None:
        attrs["projector_sha256"] = file_sha256(req.projector)
    out = Path(req.out)
    if front is not None:
        front.to(device)
    report: SkipReport | None = None
    store: FeatureStore | None = None
    try:
        if req.features is not None:
            store = FeatureStore(req.features)
            if str(store.attrs.get("checkpoint_sha256", "")) != sha:
                raise UserError(f"{req.features} was extracted with another encoder checkpoint than {ckpt}")
            sources = StoreSources(store, modalities, fcfg.level, fused=fcfg.fused, fusion_mode=fcfg.fusion_mode)
            attrs["source_store"] = str(req.features)
            batches: Iterator[SourceBatch] = tqdm(_chunks(sources, req.batch_size),
                                                  total=-(-len(sources) // req.batch_size),
                                                  disable=not req.progress, desc=f"frontend-export -> {out.name}")
            labels, groups = store_label_specs(store), store.group_names()
        else:
            cfg = dataset_config(to_dict(module.cfg), yaml.get("data"))
            adapter, records = dataset_records(cfg)
            attrs["config"] = to_yaml(cfg)
            report = SkipReport(out.with_name(out.name + ".skipped.jsonl"), cfg.data.max_skip_fraction)
            batches = source_batches(module, cfg, records, adapter, modalities=modalities, fused=fcfg.fused,
                                     fusion_mode=fcfg.fusion_mode,
                                     batch_size=req.batch_size, device=device, report=report,
                                     progress=f"frontend-export -> {out.name}" if req.progress else None,
                                     fusion_weights=fcfg.fusion_weights)
            labels = label_specs(adapter, records)
            groups = sorted({g for r in records for g in r.groups})
        moved = (b.to(device) for b in batches) if front is not None else batches
        path = write_tokens(out, moved, front, dims, level=fcfg.level, labels=labels, groups=groups, attrs=attrs,
                            overwrite=req.overwrite)
    finally:
        if store is not None:
            store.close()
    if report is not None and report.entries:
        print(f"[cmer frontend-export] {report.summary()}", file=sys.stderr)
    counts = export_npy(path, req.npy_dir, req.name) if req.npy_dir else {}
    return path, counts
