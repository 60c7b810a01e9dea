"""Front-end YAML files and dataset iteration: config sections, the dataset config, batches of token sources.

A front-end YAML (e.g. ``experiments/mllm_frontend.yaml``) has a ``frontend:`` section (:class:`FrontEndConfig`
fields) and optionally a ``data:`` section laid over the encoder checkpoint's data settings (the model section
always comes from the checkpoint). Other sections (``llm``, ``train``) belong to the scripts that read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from contrastive_mer.config import load_yaml, to_dict
from contrastive_mer.data.datamodule import build_corpus
from contrastive_mer.data.dataset import SkipReport
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter
from contrastive_mer.errors import UserError
from contrastive_mer.experiment import config_for_checkpoint
from contrastive_mer.extract.encode import encode_records
from contrastive_mer.frontend.sources import SourceBatch, encode_sources


def load_frontend_yaml(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML at ``path`` (or nothing) with ``key=value`` overrides applied, as a plain dict."""
    merged = load_yaml(path, overrides)
    try:
        out = to_dict(merged)
    except OmegaConfBaseException as err:
        raise UserError(f"{path or 'config'}: {str(err).splitlines()[0]}") from None
    if "model" in out:
        raise UserError(f"{path or 'overrides'}: model.* cannot be set here: the encoder checkpoint defines the model")
    return out


def dataset_config(checkpoint_config: dict[str, Any], data: dict[str, Any] | None,
                   seed: int | None = None) -> DictConfig:
    """The checkpoint's experiment config with ``data`` laid over its data section (and ``seed`` when given)."""
    layers: list[dict[str, Any]] = [{"data": data}] if data else []
    if seed is not None:
        layers.append({"seed": seed})
    return config_for_checkpoint(checkpoint_config, layers=layers)


def source_batches(module: Any, cfg: DictConfig, records: Sequence[ClipRecord], adapter: CorpusAdapter,
                   *, modalities: Sequence[str], fused: bool, fusion_mode: str, batch_size: int = 32,
                   device: str | torch.device = "auto", report: SkipReport | None = None,
                   progress: str | None = None,
                   fusion_weights: Mapping[str, float] | None = None) -> Iterator[SourceBatch]:
    """Encode ``records`` with ``module`` (no gradients) and yield CPU :class:`SourceBatch` es (the fused
    source with ``fusion_mode`` and, for ``weighted``, ``fusion_weights``).

    Undecodable clips are skipped and recorded in ``report`` (which raises past its skip limit).
    """
    return encode_records(module, cfg, adapter, records,
                          encode=lambda b: encode_sources(module, b, modalities, fused=fused, fusion_mode=fusion_mode,
                                                   fusion_weights=fusion_weights).to("cpu"),
                          batch_size=batch_size, device=device, report=report, progress=progress)


def dataset_records(cfg: DictConfig) -> tuple[CorpusAdapter, list[ClipRecord]]:
    """The configured dataset's adapter and records; a one-line error when it lists no clips."""
    adapter = build_corpus(cfg)
    records = adapter.records()
    if not records:
        raise UserError(f"dataset {cfg.data.dataset!r} lists no clips (root: {cfg.data.root})")
    return adapter, records
