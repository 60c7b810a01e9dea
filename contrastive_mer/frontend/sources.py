"""Token sources: per modality the frame-level sequence (before pooling) and the pooled feature, plus the
late-fused feature, for a batch of clips.

From raw inputs: :func:`prepare_batch` (clip paths, arrays or text -> :class:`~contrastive_mer.data.sample.Batch`)
then :func:`encode_sources` (trained encoders). From a feature store written with sequences:
:class:`StoreSources`. Either way the result is a :class:`SourceBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from contrastive_mer.data.dataset import Collator, PreparedSample
from contrastive_mer.data.kinds import kind_of
from contrastive_mer.data.media import MediaError
from contrastive_mer.data.sample import Batch
from contrastive_mer.data.transforms import Preprocessor
from contrastive_mer.frontend.config import FUSED
from contrastive_mer.fusion import fuse


@dataclass
class TokenSource:
    """One source over a batch.

    Attributes:
        feature: ``(B, D)`` pooled feature (for ``fused``: the fused vector).
        present: ``(B,)`` bool, False where the sample lacks the source (its rows are not data).
        sequence: ``(B, T, D)`` frame-level output, zero-padded, or None when there is no time axis.
        lengths: ``(B,)`` valid frames of each row of ``sequence`` (0 for absent rows).
    """

    feature: torch.Tensor
    present: torch.Tensor
    sequence: torch.Tensor | None = None
    lengths: torch.Tensor | None = None

    def as_sequence(self, level: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sequence, lengths)`` for the projector: the frames at ``sequence`` level when there are some,
        otherwise the pooled feature as a one-frame sequence."""
        if level == "sequence" and self.sequence is not None:
            assert self.lengths is not None
            return self.sequence, self.lengths
        ones = torch.ones(self.feature.shape[0], dtype=torch.long, device=self.feature.device)
        return self.feature.unsqueeze(1), ones


@dataclass
class SourceBatch:
    """Token sources of B clips, with their ids (and labels/groups when known)."""

    ids: list[str]
    sources: dict[str, TokenSource]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> "SourceBatch":
        def move(s: TokenSource) -> TokenSource:
            return TokenSource(s.feature.to(device), s.present.to(device),
                               None if s.sequence is None else s.sequence.to(device),
                               None if s.lengths is None else s.lengths.to(device))

        return SourceBatch(self.ids, {k: move(v) for k, v in self.sources.items()},
                           {k: v.to(device) for k, v in self.labels.items()}, self.groups)

    def split(self) -> list["SourceBatch"]:
        """One single-clip batch per row, sequences cut to their valid length (for caching)."""
        out = []
        for i, sid in enumerate(self.ids):
            srcs = {}
            for name, s in self.sources.items():
                seq = lens = None
                if s.sequence is not None and s.lengths is not None:
                    n = int(s.lengths[i])
                    seq, lens = s.sequence[i:i + 1, :max(n, 1)], s.lengths[i:i + 1]
                srcs[name] = TokenSource(s.feature[i:i + 1], s.present[i:i + 1], seq, lens)
            out.append(SourceBatch([sid], srcs, {k: v[i:i + 1] for k, v in self.labels.items()},
                                   {k: [v[i]] for k, v in self.groups.items()}))
        return out

    @staticmethod
    def concat(parts: Sequence["SourceBatch"]) -> "SourceBatch":
        """Concatenate batches (sequences re-padded to the longest)."""
        if not parts:
            raise ValueError("SourceBatch.concat: nothing to concatenate")
        names = list(parts[0].sources)
        srcs = {}
        for name in names:
            items = [p.sources[name] for p in parts]
            feature = torch.cat([s.feature for s in items])
            present = torch.cat([s.present for s in items])
            seq = lens = None
            seqs = [s.sequence for s in items if s.sequence is not None]
            lengths = [s.lengths for s in items if s.lengths is not None]
            if len(seqs) == len(items):
                longest = max(q.shape[1] for q in seqs)
                seq = torch.cat([torch.nn.functional.pad(q, (0, 0, 0, longest - q.shape[1])) for q in seqs])
                if len(lengths) != len(items):
                    raise ValueError(f"SourceBatch.concat: source {name!r} has sequences without lengths")
                lens = torch.cat(lengths)
            srcs[name] = TokenSource(feature, present, seq, lens)
        labels = {k: torch.cat([p.labels[k] for p in parts]) for k in parts[0].labels}
        groups = {k: [g for p in parts for g in p.groups[k]] for k in parts[0].groups}
        return SourceBatch([i for p in parts for i in p.ids], srcs, labels, groups)


# ------------------------------------------------------------------------------------------- from encoders
def encode_sources(module: Any, batch: Batch, modalities: Sequence[str], *, fused: bool = True,
                   fusion_mode: str = "concat", fusion_weights: Mapping[str, float] | None = None) -> SourceBatch:
    """Run the encoders of ``module`` (a :class:`~contrastive_mer.model.module.PairwiseContrastiveModule`) on
    ``batch``. Gradients flow only if enabled by the caller and the encoders require them.

    The fused source fuses every modality of the module in the module's order (as the feature store does);
    it is present where at least one modality is present.
    """
    outputs = module.encode(batch)
    sources: dict[str, TokenSource] = {}
    for m in modalities:
        out, present = outputs[m], batch.present[m]
        seq = lens = None
        if out.sequence is not None:  # canonical form: frames past the valid length are zero
            lens = torch.where(present, out.sequence_lengths.to(present.device), 0)
            valid = torch.arange(out.sequence.shape[1], device=lens.device).unsqueeze(0) < lens.unsqueeze(1)
            seq = torch.where(valid.unsqueeze(-1), out.sequence, 0.0)
        sources[m] = TokenSource(out.feature, present, seq, lens)
    if fused:
        features = {m: o.feature for m, o in outputs.items()}
        projections = module.project(outputs) if fusion_mode != "concat" else None
        presence = {m: batch.present[m] for m in module.modalities}
        vector = fuse(features, projections, presence, mode=fusion_mode, weights=fusion_weights,
                      modalities=list(module.modalities))
        any_present = torch.stack([presence[m] for m in module.modalities]).any(0)
        sources[FUSED] = TokenSource(vector, any_present)
    return SourceBatch(list(batch.ids), sources, dict(batch.labels), dict(batch.groups))


def prepare_batch(preprocessors: Mapping[str, Preprocessor], samples: Sequence[Mapping[str, Any]],
                  ids: Sequence[str] | None = None) -> Batch:
    """Raw inputs -> a collated :class:`Batch`.

    Each sample maps modality -> raw input: a waveform / frames / feature array, a text ``str``, or a file path
    decoded by the modality's input kind with the preprocessor's settings (an audio file for waveform kinds, a
    video for frames, ``.npy`` for vectors). A modality a
    sample does not name is absent for it. Errors name the sample and the modality.
    """
    ids = [str(i) for i in ids] if ids is not None else [f"sample-{i}" for i in range(len(samples))]
    if len(ids) != len(samples):
        raise ValueError(f"prepare_batch: {len(ids)} ids for {len(samples)} samples")
    prepared = []
    for sid, raw in zip(ids, samples):
        unknown = sorted(set(raw) - set(preprocessors))
        if unknown:
            raise ValueError(f"sample {sid!r}: unknown modalities {unknown}; the model has {sorted(preprocessors)}")
        tensors = {}
        for m, value in raw.items():
            if value is None:
                continue
            try:
                prep = preprocessors[m]
                if isinstance(value, Path) or (isinstance(value, str) and not kind_of(prep).text_input):
                    value = kind_of(prep).decode_path(prep, Path(value))
                tensors[m] = preprocessors[m](value)
            except (ValueError, RuntimeError, OSError, MediaError) as err:
                raise ValueError(f"sample {sid!r}, {m}: {err}") from err
        prepared.append(PreparedSample(sid, tensors, {}, {}))
    return Collator(dict(preprocessors))(prepared)


# ---------------------------------------------------------------------------------------------- from a store
class StoreSources:
    """Token sources read from an open :class:`~contrastive_mer.store.hdf5.FeatureStore`.

    A modality's source is its view ``<m>`` (``features/<m>``), the fused source the view
    ``fused/<fusion_mode>``; a row is present where the view is usable (:meth:`FeatureStore.view`).
    Per-row arrays (features, presence, fused vectors, labels, groups) are read once and kept in memory;
    frame-level sequences are read row by row. At ``sequence`` level each modality needs ``/sequences/<m>``
    (extract with ``--sequences``), otherwise a ``KeyError`` names the store and the modality.
    """

    def __init__(self, store: Any, modalities: Sequence[str], level: str = "sequence", *, fused: bool = True,
                 fusion_mode: str = "concat") -> None:
        self.store, self.modalities, self.level = store, list(modalities), level
        unknown = [m for m in self.modalities if m not in store.modalities]
        if unknown:
            raise KeyError(f"{store.path} has no modalities {unknown}; it has {store.modalities}")
        if level == "sequence":
            for m in self.modalities:
                if not store.has_sequences(m):
                    raise KeyError(f"{store.path} has no frame-level sequences for {m!r}; extract with "
                                   f"--sequences {m} or use level=feature")
        views = {m: store.view(m) for m in self.modalities}
        self.features = {m: v.vectors.astype(np.float32) for m, v in views.items()}
        self.present = {m: v.usable for m, v in views.items()}
        self.sequence_dims = {m: store.sequence(m, 0).shape[1] if level == "sequence" and len(store)
                              else self.features[m].shape[1] for m in self.modalities}
        self.fused = store.view(f"fused/{fusion_mode}") if fused else None
        self.labels = {n: store.labels(n) for n in store.label_names()}
        self.groups = {n: store.groups(n) for n in store.group_names()}

    def __len__(self) -> int:
        return len(self.store)

    def __call__(self, rows: Sequence[int]) -> SourceBatch:
        rows = [int(r) for r in rows]
        sources: dict[str, TokenSource] = {}
        for m in self.modalities:
            present = torch.from_numpy(self.present[m][rows])
            seq = lens = None
            if self.level == "sequence":
                frames = [self.store.sequence(m, r).astype(np.float32) if present[i] else None
                          for i, r in enumerate(rows)]
                lens = torch.tensor([0 if f is None else len(f) for f in frames], dtype=torch.long)
                seq = torch.zeros(len(rows), max(1, int(lens.max())), self.sequence_dims[m])
                for i, f in enumerate(frames):
                    if f is not None and len(f):
                        seq[i, :len(f)] = torch.from_numpy(f)
            sources[m] = TokenSource(torch.from_numpy(self.features[m][rows]), present, seq, lens)
        if self.fused is not None:
            sources[FUSED] = TokenSource(torch.from_numpy(self.fused.vectors[rows].astype(np.float32)),
                                         torch.from_numpy(self.fused.usable[rows]))
        ids = [str(self.store.ids[r]) for r in rows]
        labels = {n: torch.from_numpy(np.asarray(v[rows])) for n, v in self.labels.items()}
        groups = {n: [str(g) for g in v[rows]] for n, v in self.groups.items()}
        return SourceBatch(ids, sources, labels, groups)
