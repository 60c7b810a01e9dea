"""A frozen speech backbone's layers, one by one, for every clip of a corpus, in MERTools' UTT / FRA layout: what
``cmer backbone-export`` does.

For each chosen layer ``k`` (an index into ``hidden_states`` as transformers counts them: 0 is the input of the
first transformer layer) and each clip ``<id>``:

* ``<out>/<name>-L<k>-FRA/<id>.npy``: the frame sequence ``(T, D)``, float32;
* ``<out>/<name>-L<k>-UTT/<id>.npy``: the utterance mean over those frames ``(D,)``;

one folder per feature and level, one file per clip, as MERTools' extraction scripts write them
(``<feature>-UTT/<clip>.npy``), so its training code reads them as they are. The features come from a modality of
an experiment config whose input is ``hf_audio_cached`` (same model, preprocessing, clip length and windows),
through that kind's preprocessor with the chosen layers concatenated (``layer_combine: concat``,
``sequence: true``): with ``data.cache: disk`` every clip runs through the backbone once, and a pretraining run
that caches the same layers in the same way shares the cache. No ``data.normalize``: the backbone's own values.
Resumable: a clip whose files all exist is not computed again; every file is written to a temporary name and
moved into place (``os.replace``), so a file that exists is complete.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from omegaconf import DictConfig

from contrastive_mer.data.dataset import MERDataset, Skipped, uses_disk
from contrastive_mer.data.kinds.hf_audio_cached import HFAudioCached
from contrastive_mer.errors import UserError

LEVELS = ("UTT", "FRA")
KIND = "hf_audio_cached"


class LayerExportError(UserError):
    """A backbone-export request that cannot run (a modality that is not ``hf_audio_cached``, a bad level)."""


@dataclass
class LayerExportResult:
    """What one export did: the folders (per layer and level), clips written now, clips already complete, clips
    without the modality, and the clips that failed to decode (id, reason)."""

    out_dir: Path
    layers: list[int]
    folders: list[Path]
    written: int = 0
    complete: int = 0
    absent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def file_name(sample_id: str) -> str:
    """``<id>.npy``; ValueError for an id that cannot be one file name (empty, ``.``/``..``, a path separator)."""
    if not sample_id or sample_id in (".", "..") or any(c in sample_id for c in "/\\\0"):
        raise ValueError(f"clip id {sample_id!r} cannot be a file name for the .npy export")
    return f"{sample_id}.npy"


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file beside ``path``, then ``os.replace``: ``path`` is complete or absent."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def _export_preprocessor(cfg: DictConfig, modality: str, layers: Any, device: str | None) -> HFAudioCached:
    """The modality's ``hf_audio_cached`` preprocessor with ``layers`` concatenated as a frame sequence."""
    from contrastive_mer.data.kinds import INPUT_KINDS
    from contrastive_mer.data.kinds.resolve import input_kind, preprocess_config

    modalities = cfg.model.modalities
    if modality not in modalities:
        raise LayerExportError(f"model.modalities.{modality}: no such modality; the config has "
                               f"{', '.join(modalities) or 'none'}")
    mod = modalities[modality]
    kind = input_kind(mod)
    if kind != KIND:
        raise LayerExportError(f"model.modalities.{modality}.input is {kind!r}; the per-layer export reads a "
                               f"frozen backbone through input: {KIND}")
    base = preprocess_config(mod, kind)
    chosen = base.layers if layers is None else layers
    settings = dataclasses.replace(base, layers=list(chosen) if isinstance(chosen, (list, tuple)) else chosen,
                                   layer_combine="concat", sequence=True, device=device or base.device)
    prep = INPUT_KINDS.get(KIND).build(settings, getattr(mod, "source", None) or modality)
    assert isinstance(prep, HFAudioCached)
    try:
        backbone = prep.encoder  # loaded once; resolves "all" and negative indices
    except ValueError as err:  # a layer out of range, named by the settings this export reads
        raise LayerExportError(str(err).replace("encoder_args.layers", "--layers / preprocess.layers")) from None
    prep.cfg.input_dim = len(backbone.layers) * backbone.hidden
    return prep


def _targets(out_dir: Path, name: str, layers: Sequence[int], levels: Sequence[str]) -> dict[tuple[int, str], Path]:
    return {(k, lv): out_dir / f"{name}-L{k}-{lv}" for k in layers for lv in levels}


def export_backbone_layers(cfg: DictConfig, modality: str, out_dir: str | Path, *, layers: Any = None,
                           name: str | None = None, levels: Sequence[str] = LEVELS, device: str | None = None,
                           progress: Callable[[int, int], None] | None = None) -> LayerExportResult:
    """Write every clip's chosen layers of ``modality`` (an ``hf_audio_cached`` input of ``cfg``) under
    ``out_dir`` (layout in the module docstring) and return what was done.

    Args:
        layers: an index into ``hidden_states``, a list of them or ``"all"``; None: the modality's
            ``preprocess.layers``.
        name: the feature name that starts each folder; None: the model folder's (or hub id's) last part.
        levels: ``UTT`` and/or ``FRA``.
        device: where the backbone runs (``cpu``, ``cuda``); None: the modality's ``preprocess.device``.
        progress: called as ``progress(clips_done, clips_total)`` after every clip.
    """
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise LayerExportError(f"levels: expected UTT and/or FRA, got {list(levels)}")
    from contrastive_mer.data.datamodule import build_corpus

    prep = _export_preprocessor(cfg, modality, layers, device)
    indices: list[int] = list(prep.encoder.layers)
    hidden = int(prep.encoder.hidden)
    name = name or Path(str(prep.cfg.model_path).rstrip("/")).name
    out = Path(out_dir)
    targets = _targets(out, name, indices, levels)
    for folder in targets.values():
        folder.mkdir(parents=True, exist_ok=True)
    result = LayerExportResult(out, indices, list(targets.values()))
    adapter = build_corpus(cfg)
    records = adapter.records()
    cache = "disk" if uses_disk(cfg.data.cache) else "none"
    data = MERDataset(adapter, records, {modality: prep}, cache, cache_dir=cfg.data.cache_dir)
    for i, record in enumerate(records):
        files = {key: folder / file_name(str(record.id)) for key, folder in targets.items()}
        if all(f.is_file() for f in files.values()):
            result.complete += 1
        elif record.sources.get(prep.source or modality) is None:
            result.absent += 1
        else:
            item = data[i]
            if isinstance(item, Skipped) or modality not in item.tensors:
                result.failed.append((item.id, getattr(item, "reason", f"no {modality} input")))
            else:
                frames = item.tensors[modality].float()
                for j, k in enumerate(indices):
                    seq = frames[:, j * hidden: (j + 1) * hidden].numpy().astype(np.float32)
                    for lv in levels:
                        path = files[(k, lv)]
                        if not path.is_file():
                            save_npy_atomic(path, seq if lv == "FRA" else seq.mean(0))
                result.written += 1
        if progress is not None:
            progress(i + 1, len(records))
    return result


__all__ = ["LEVELS", "LayerExportError", "LayerExportResult", "export_backbone_layers", "file_name",
           "save_npy_atomic"]
