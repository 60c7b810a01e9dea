"""Export front-end tokens to an HDF5 store and to MER-style per-sample ``.npy`` files.

The token file uses the feature-store layout (read it with :class:`~contrastive_mer.store.hdf5.FeatureStore`),
with one "modality" per token source (``audio``, ``video``, ``text``, ``fused``, ...):

* ``/sequences/<source>`` (+ ``_offsets``): the frame level ``[T_i, D]`` of each sample: the soft tokens that
  enter the LLM (``kind=frontend-tokens``, D = LLM hidden size), or, without a projector, the token sources
  before projection (``kind=frontend-sources``: the encoder's frame-level sequence, or the pooled/fused vector
  as one frame);
* ``/features/<source>``: the utterance level ``[D]``: the mean of the sample's soft tokens, or the encoder's
  pooled feature (the fused vector for ``fused``);
* ``/present/<source>``: False where the sample lacks the source. Such rows hold zeros (or, with
  ``missing=learned``, the learned missing token) and are not data: :func:`export_npy` writes no file for them.

:func:`export_npy` writes MERTools' layouts from any store with sequences: ``<dir>/<name>-<source>-UTT/<id>.npy``
``[D]`` and ``<dir>/<name>-<source>-FRA/<id>.npy`` ``[T, D]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from contrastive_mer.extract.labels import fill_missing_labels
from contrastive_mer.frontend.config import FUSED
from contrastive_mer.frontend.sources import SourceBatch
from contrastive_mer.frontend.splice import SoftTokens
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter, LabelSpec

KIND_TOKENS, KIND_SOURCES = "frontend-tokens", "frontend-sources"


class TokenWriter:
    """Streams :class:`SourceBatch` rows (and their soft tokens) into a token store; resumable like the
    feature store writer (:meth:`done_ids`).

    Args:
        path: output ``.h5``.
        source_dims: source -> width D written (LLM hidden size for tokens; source width otherwise).
        projected: write soft tokens (True) or the token sources themselves (False).
        level: ``sequence`` or ``feature``: the frame level of the sources when ``projected`` is False.
        labels: label name -> :class:`LabelSpec` / class names / None (float).
        groups: group names to keep.
        attrs: extra root attributes (config, checkpoint SHA-256, ...).
    """

    def __init__(self, path: str | Path, source_dims: Mapping[str, int], projected: bool, level: str = "sequence",
                 *, labels: Mapping[str, Any] | None = None, groups: Sequence[str] = (),
                 attrs: Mapping[str, Any] | None = None, sequence_dtype: str = "float32", overwrite: bool = False,
                 part_rows: int = 256):
        self.sources = list(source_dims)
        self.projected, self.level = projected, level
        self.labels = dict(labels or {})
        self.groups = list(groups)
        all_attrs = {"kind": KIND_TOKENS if projected else KIND_SOURCES, **(attrs or {})}
        self.writer = FeatureStoreWriter(path, self.sources, dict(source_dims), None, fused_dims={},
                                         sequences=dict(source_dims), labels=self.labels, groups=self.groups,
                                         attrs=all_attrs, sequence_dtype=sequence_dtype, part_rows=part_rows,
                                         overwrite=overwrite)

    def done_ids(self) -> set[str]:
        return self.writer.done_ids()

    def append(self, batch: SourceBatch, tokens: Mapping[str, SoftTokens] | None = None) -> None:
        """Add one batch; ``tokens`` (from the front end) is required when ``projected``."""
        if self.projected and tokens is None:
            raise ValueError("TokenWriter: this store holds soft tokens; pass the front end's tokens")
        n = len(batch)
        features: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        sequences: dict[str, Sequence[np.ndarray | None]] = {}
        for s in self.sources:
            if s not in batch.sources:
                raise KeyError(f"TokenWriter: batch lacks source {s!r} (ids {batch.ids[:1]}...)")
            src = batch.sources[s]
            present[s] = src.present.cpu().numpy().astype(bool)
            if self.projected:
                assert tokens is not None
                t = tokens[s]
                token_rows = [t.row(i).detach().float().cpu().numpy() for i in range(n)]
                features[s] = np.stack([r.mean(0) if len(r) else np.zeros(t.tokens.shape[-1], np.float32)
                                        for r in token_rows])
                sequences[s] = token_rows
            else:
                seq_t, lengths_t = src.as_sequence("feature" if s == FUSED else self.level)
                seq, lengths = seq_t.detach().float().cpu().numpy(), lengths_t.cpu().numpy()
                sequences[s] = [seq[i, :int(lengths[i])] if present[s][i] else None for i in range(n)]
                features[s] = np.where(present[s][:, None], src.feature.detach().float().cpu().numpy(), 0.0)
        labels = fill_missing_labels(batch.labels, self.writer.schema.labels, n)
        self.writer.append(batch.ids, labels, {g: batch.groups.get(g, [""] * n) for g in self.groups},
                           features, projections={}, present=present, fused={}, sequences=sequences)

    def finish(self) -> Path:
        return self.writer.finish()


def write_tokens(path: str | Path, batches: Iterable[SourceBatch], front: Any | None, source_dims: Mapping[str, int],
                 **writer_kwargs: Any) -> Path:
    """Write every batch (skipping ids already written), projecting with ``front`` when given."""
    writer = TokenWriter(path, source_dims, projected=front is not None, **writer_kwargs)
    done = writer.done_ids()
    for batch in batches:
        keep = [sid not in done for sid in batch.ids]
        if not any(keep):
            continue
        if not all(keep):
            batch = SourceBatch.concat([p for p, k in zip(batch.split(), keep) if k])
        with torch.no_grad():
            tokens = front(batch) if front is not None else None
        writer.append(batch, tokens)
    return writer.finish()


def _safe_name(sample_id: str, store: Path) -> str:
    if not sample_id or sample_id in (".", "..") or "/" in sample_id or "\\" in sample_id or "\0" in sample_id:
        raise ValueError(f"{store}: id {sample_id!r} cannot be a file name for the .npy export")
    return sample_id


def export_npy(store: str | Path | FeatureStore, out_dir: str | Path, name: str = "cmer",
               *, sources: Sequence[str] | None = None, levels: Sequence[str] = ("UTT", "FRA")) -> dict[str, int]:
    """Write ``<out_dir>/<name>-<source>-UTT/<id>.npy`` (``features``, ``[D]``) and ``-FRA/<id>.npy``
    (``sequences``, ``[T, D]``) for the usable rows of the source's view (:meth:`FeatureStore.view`: present,
    all values finite; a source is named as the view rule names it, e.g. ``audio`` = ``features/audio``). Works
    on token stores and on feature stores extracted with sequences (a source without sequences gets UTT only).
    Returns files written per folder."""
    own = not isinstance(store, FeatureStore)
    fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
    try:
        out_dir = Path(out_dir)
        bad = [lv for lv in levels if lv not in ("UTT", "FRA")]
        if bad:
            raise ValueError(f"export_npy: unknown levels {bad}; expected UTT and/or FRA")
        names = [_safe_name(str(i), fs.path) for i in fs.ids]
        counts: dict[str, int] = {}
        for s in sources if sources is not None else fs.modalities:
            view = fs.view(s)  # the one view rule: the source's vectors and the rows where they hold data
            rows = view.rows
            if "UTT" in levels:
                folder = out_dir / f"{name}-{s}-UTT"
                folder.mkdir(parents=True, exist_ok=True)
                for row in rows:
                    np.save(folder / f"{names[row]}.npy", view.vectors[row])
                counts[folder.name] = len(rows)
            if "FRA" in levels and fs.has_sequences(s):
                folder = out_dir / f"{name}-{s}-FRA"
                folder.mkdir(parents=True, exist_ok=True)
                for row in rows:
                    np.save(folder / f"{names[row]}.npy", fs.sequence(s, int(row)))
                counts[folder.name] = len(rows)
        return counts
    finally:
        if own:
            fs.close()


__all__ = ["KIND_SOURCES", "KIND_TOKENS", "LabelSpec", "TokenWriter", "export_npy", "write_tokens"]
