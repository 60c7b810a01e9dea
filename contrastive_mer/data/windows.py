"""Two random temporal windows per clip, for the official code's two-window loss (``loss.name:
two_window_supcon``, :func:`contrastive_mer.model.losses.two_window_pairwise_loss`).

With ``data.two_window.frames: W`` every training (and validation) batch holds each clip twice: rows ``0..B-1``
are window 0 of the ``B`` clips, rows ``B..2B-1`` window 1 of the same clips in the same order. A window is ``W``
consecutive frames of every sequence modality (``modality_frames`` sets another length per modality, e.g. for
log-mel frames at 100 per second beside landmarks at 30; 0 leaves a modality whole). Both windows start at the
same fraction of the clip in every modality, so they stay roughly aligned in time across modalities of different
frame rates. A clip shorter than a window is repeated from its start to fill it, as the official code pads.

Which modalities are windowed: log-mel spectrograms and frame-vector sequences (landmarks, word vectors, openSMILE
low-level descriptors) by default; decoded video frames only when ``modality_frames`` names them (they are
already a few frames spread over the clip); token ids never (both windows get the whole text). Training windows
are drawn with ``torch.rand`` (seeded per worker by Lightning); validation windows from each clip's id, so the
validation loss compares across epochs. Extraction and probes always see whole clips.
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from contrastive_mer.config import TwoWindowConfig
from contrastive_mer.data.dataset import Collator, PreparedSample, Skipped
from contrastive_mer.data.kinds import kind_of
from contrastive_mer.data.sample import Batch
from contrastive_mer.data.transforms import Preprocessor


def window_lengths(cfg: TwoWindowConfig, preprocessors: Mapping[str, Preprocessor]) -> dict[str, int]:
    """Modality -> window length in its own frames (0: the modality is not windowed; its kind decides)."""
    return {m: kind_of(prep).window_length(prep, cfg.frames, cfg.modality_frames.get(m))
            for m, prep in preprocessors.items()}


def check_two_window(cfg: Any) -> None:
    """Raise ValueError naming the key when ``loss.name`` and ``data.two_window`` do not fit together (the loss
    section itself: :func:`contrastive_mer.model.losses.check_config`)."""
    loss, windows = cfg.loss, cfg.data.two_window
    if windows.frames < 0:
        raise ValueError(f"data.two_window.frames: {windows.frames} must be >= 0 (0: off)")
    for m, n in windows.modality_frames.items():
        if m not in cfg.model.modalities:
            raise ValueError(f"data.two_window.modality_frames.{m}: no such modality; the model has "
                             f"{', '.join(cfg.model.modalities)}")
        if n < 0:
            raise ValueError(f"data.two_window.modality_frames.{m}: {n} must be >= 0 (0: the whole clip)")
    two = loss.name == "two_window_supcon"
    if two and windows.frames < 1:
        raise ValueError("loss.name: two_window_supcon needs two windows per clip (data.two_window.frames=W)")
    if windows.frames > 0 and not two:
        raise ValueError(f"data.two_window.frames: {windows.frames} needs loss.name=two_window_supcon (the "
                         f"{loss.name} loss scores each clip once)")


def take_window(x: torch.Tensor, axis: int, length: int, start_fraction: float) -> torch.Tensor:
    """``length`` consecutive steps of ``x`` along ``axis``, starting at ``start_fraction`` of the free range
    (``round(u * (T - length))``); a clip shorter than ``length`` is repeated from its start to fill it."""
    steps = x.shape[axis]
    if steps >= length:
        start = int(round(float(start_fraction) * (steps - length)))
        return x.narrow(axis, start, length)
    return x.index_select(axis, torch.arange(length) % steps)


def _id_fractions(sample_id: str) -> tuple[float, float]:
    rng = np.random.default_rng(zlib.crc32(sample_id.encode()))
    first, second = rng.uniform(size=2)
    return float(first), float(second)


class TwoWindowCollator:
    """Collates ``B`` prepared clips into a :class:`Batch` of ``2B`` rows: window 0 of every clip, then window 1
    (see the module docstring). ``deterministic``: windows drawn from each clip's id (validation)."""

    def __init__(self, preprocessors: Mapping[str, Preprocessor], lengths: Mapping[str, int],
                 *, deterministic: bool = False, label_names: Sequence[str] | None = None):
        self.collate = Collator(dict(preprocessors), label_names)
        self.axes = {m: p.time_axis for m, p in preprocessors.items()}
        self.lengths = dict(lengths)
        self.deterministic = deterministic

    def windows(self, sample: PreparedSample, fractions: tuple[float, float]) -> list[PreparedSample]:
        """The two windows of one clip."""
        out = []
        for u in fractions:
            tensors = {m: take_window(t, self.axes[m], self.lengths[m], u) if self.lengths.get(m) else t
                       for m, t in sample.tensors.items()}
            out.append(PreparedSample(sample.id, tensors, sample.labels, sample.groups))
        return out

    def __call__(self, items: Sequence[PreparedSample | Skipped]) -> Batch:
        first: list[PreparedSample | Skipped] = []
        second: list[PreparedSample | Skipped] = []
        for item in items:
            if isinstance(item, Skipped):
                first.append(item)
                continue
            if self.deterministic:
                fractions = _id_fractions(item.id)
            else:
                drawn = torch.rand(2).tolist()
                fractions = (drawn[0], drawn[1])
            a, b = self.windows(item, fractions)
            first.append(a)
            second.append(b)
        return self.collate(first + second)


def make_collator(cfg: Any, preprocessors: Mapping[str, Preprocessor],
                  *, train: bool = True) -> Collator | TwoWindowCollator:
    """The collate function of pretraining batches: two windows per clip when ``data.two_window`` is on."""
    section = cfg.data.two_window
    values: Any = OmegaConf.to_container(section) if isinstance(section, DictConfig) else dict(section)
    windows = TwoWindowConfig(**values)
    if windows.frames < 1:
        return Collator(dict(preprocessors))
    return TwoWindowCollator(preprocessors, window_lengths(windows, preprocessors), deterministic=not train)


def split_windows(batch_size: int) -> tuple[slice, slice]:
    """Rows of window 0 and window 1 in a two-window batch of ``batch_size`` (= 2B) rows."""
    half = batch_size // 2
    return slice(0, half), slice(half, 2 * half)
