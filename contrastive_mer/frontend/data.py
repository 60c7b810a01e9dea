"""Front-end YAML files and dataset iteration: config sections, the dataset config, batches of token sources.

A front-end YAML (e.g. ``experiments/mllm_frontend.yaml``) has a ``frontend:`` section (:class:`FrontEndConfig`
fields) and optionally a ``data:`` section laid over the encoder checkpoint's data settings (the model section
always comes from the checkpoint). Other sections (``llm``, ``train``) belong to the scripts that read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import DataLoader

from contrastive_mer.config import config_from_dict, to_dict
from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset, SkipReport
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter
from contrastive_mer.errors import UserError
from contrastive_mer.frontend.sources import SourceBatch, encode_sources
from contrastive_mer.store.hdf5 import LabelSpec
from contrastive_mer.extraction import label_specs  # noqa: F401  (re-exported for the pipeline)


def load_frontend_yaml(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML at ``path`` (or nothing) with ``key=value`` overrides applied, as a plain dict."""
    try:
        layers = []
        if path is not None:
            file = Path(path)
            if not file.is_file():
                raise UserError(f"config file not found: {file}")
            layers.append(OmegaConf.load(file))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise UserError(f"override {bad[0]!r} is not key=value")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers) if layers else OmegaConf.create({})
        out = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        raise UserError(f"{path or 'config'}: {str(err).splitlines()[0]}") from None
    if not isinstance(out, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    if "model" in out:
        raise UserError(f"{path or 'overrides'}: model.* cannot be set here: the encoder checkpoint defines the model")
    return out


def dataset_config(checkpoint_config: dict[str, Any], data: dict[str, Any] | None,
                   seed: int | None = None) -> DictConfig:
    """The checkpoint's experiment config with ``data`` laid over its data section."""
    base = to_dict(config_from_dict(checkpoint_config))
    if data:
        base["data"] = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(base["data"]), OmegaConf.create(data)))
    if seed is not None:
        base["seed"] = seed
    return config_from_dict(base)


def source_batches(module: Any, cfg: DictConfig, records: Sequence[ClipRecord], adapter: CorpusAdapter,
                   modalities: Sequence[str], fused: bool, fusion_mode: str, batch_size: int = 32,
                   device: str | torch.device = "cpu", report: SkipReport | None = None) -> Iterator[SourceBatch]:
    """Encode ``records`` with ``module`` (no gradients) and yield CPU :class:`SourceBatch` es.

    Undecodable clips are skipped and recorded in ``report`` (which raises past its skip limit).
    """
    preprocessors = build_preprocessors(cfg)
    dataset = MERDataset(adapter, records, preprocessors, cache="none")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                        collate_fn=Collator(preprocessors))
    module = module.to(device).eval()
    seen = 0
    for batch in loader:
        seen += len(batch) + len(batch.skipped)
        if report is not None:
            report.add(batch.skipped)
            report.check(seen)
        if len(batch) == 0:
            continue
        with torch.no_grad():
            yield encode_sources(module, batch.to(device), modalities, fused, fusion_mode).to("cpu")


def dataset_records(cfg: DictConfig) -> tuple[CorpusAdapter, list[ClipRecord]]:
    adapter = build_corpus(cfg)
    records = adapter.records()
    if not records:
        raise UserError(f"dataset {cfg.data.dataset!r} lists no clips (root: {cfg.data.root})")
    return adapter, records
