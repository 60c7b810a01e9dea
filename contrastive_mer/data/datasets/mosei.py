"""CMU-MOSI / CMU-MOSEI adapter reading the CMU Multimodal SDK's computational sequences (``.csd``).

A ``.csd`` file is HDF5: one top-level group named after the sequence (``COVAREP``, ``FACET 4.2``,
``glove_vectors``, ``All Labels``, ...) holding ``data/<video_id>/features`` ``(T, D)``,
``data/<video_id>/intervals`` ``(T, 2)`` (start/end seconds) and ``metadata``.

Segments are the rows of the labels sequence: row ``k`` of video ``v`` is the clip ``v[k]`` with that row's
interval. Each modality contributes the frames of ``v`` whose interval overlaps the segment's interval (see
:func:`overlapping_frames`), as float32 ``(T, D)`` or mean-pooled ``(D,)``. A word sequence stored as bytes
(``CMU_MOSEI_TimestampedWords.csd``) yields the segment's words joined into a ``str`` (``sp`` pauses dropped).

Landmarks: a modality named ``landmarks`` (e.g. ``features: {landmarks: CMU_MOSEI_VisualOpenFace2.csd}``) reads
the 68 OpenFace 2-D landmarks from columns ``landmarks_x_column .. +67`` (x) and the next 68 (y) of each frame,
as the official code slices that file (x from column 299), then normalises them per segment as
:func:`contrastive_mer.data.landmarks.landmark_frames` does: float32 ``(T, 102)``.

Labels: MOSEI's ``All Labels`` has 7 columns ``[sentiment, happy, sad, anger, surprise, disgust, fear]``;
``sentiment`` is a float in [-3, 3] and ``emotions`` a 6-d multi-label binary vector (present when the
score is > 0). MOSI's opinion labels have the sentiment column only.

Groups: neither corpus ships speaker ids with the sequences, so ``speaker`` is the video id (one speaker per
YouTube video is the usual proxy); ``video`` holds the same id.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from contrastive_mer.data.datasets.base import ClipRecord, SampleError, register_adapter
from contrastive_mer.data.datasets.corpus import CorpusOptions, FolderCorpus
from contrastive_mer.data.landmarks import N_POINTS, landmark_frames
from contrastive_mer.data.sample import Sample

MOSEI_EMOTIONS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]
MOSEI_DEFAULT_FEATURES = {"audio": "CMU_MOSEI_COVAREP.csd", "video": "CMU_MOSEI_VisualFacet42.csd",
                          "text": "CMU_MOSEI_TimestampedWordVectors.csd"}
MOSEI_DEFAULT_LABELS = "CMU_MOSEI_Labels.csd"
MOSI_DEFAULT_FEATURES = {"audio": "CMU_MOSI_COVAREP.csd", "video": "CMU_MOSI_Visual_Facet_42.csd",
                         "text": "CMU_MOSI_TimestampedWordVectors.csd"}
MOSI_DEFAULT_LABELS = "CMU_MOSI_Opinion_Labels.csd"
_SPLIT_ALIASES = {"val": "valid", "validation": "valid", "dev": "valid"}


@dataclass(frozen=True)
class CsdRef:
    """Where a segment's frames live: a ``.csd`` file, a video id inside it and the segment interval."""

    path: str
    video: str
    start: float
    end: float


def overlapping_frames(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    """Boolean mask of the frames whose ``[s, e]`` interval overlaps the segment ``[start, end]``.

    A frame overlaps when ``s < end`` and ``e > start`` (sharing only a boundary does not count). A
    zero-length frame (``s == e``, e.g. a word time stamp) counts when ``start <= s < end``.
    """
    s, e = intervals[:, 0], intervals[:, 1]
    spans = (s < end) & (e > start)
    points = (s == e) & (s >= start) & (s < end)
    return spans | points


def open_csd(path: str | Path) -> tuple[Any, Any]:
    """Open a computational sequence; return ``(h5py.File, data group)``. Errors name the file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"computational sequence not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not an HDF5 computational sequence ({err})") from err
    roots = [k for k in handle.keys() if isinstance(handle[k], h5py.Group)]
    if not roots or "data" not in handle[roots[0]]:
        handle.close()
        raise ValueError(f"{path}: expected a top-level group holding 'data/<video_id>/{{features,intervals}}'"
                         f", found keys {list(handle.keys())}")
    return handle, handle[roots[0]]["data"]


def read_video(data: Any, video: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(features, intervals)`` of ``video``; raise ValueError naming file and video on a bad layout."""
    if video not in data:
        raise ValueError(f"{path}: no video {video!r}")
    group = data[video]
    if "features" not in group or "intervals" not in group:
        raise ValueError(f"{path}: video {video!r} lacks 'features' or 'intervals'")
    feats, inter = group["features"][()], np.asarray(group["intervals"][()], dtype=np.float64)
    if feats.ndim != 2 or inter.ndim != 2 or inter.shape[1] != 2 or len(feats) != len(inter):
        raise ValueError(f"{path}: video {video!r} has features {feats.shape} and intervals {inter.shape}; "
                         "expected (T, D) and (T, 2)")
    return feats, inter


def load_folds(folds: str | Path | Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Standard folds: a mapping split -> video ids, a JSON file of that mapping, or the SDK's ``.py`` file
    with ``standard_{train,valid,test}_fold = [...]`` lists (read with :mod:`ast`, never executed)."""
    if isinstance(folds, Mapping):
        return {_SPLIT_ALIASES.get(k, k): [str(v) for v in ids] for k, ids in folds.items()}
    path = Path(folds)
    if not path.is_file():
        raise FileNotFoundError(f"folds file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        found: dict[str, list[str]] = {}
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError as err:
            raise ValueError(f"{path}: cannot parse folds ({err})") from err
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    continue
                if isinstance(value, list):
                    name = node.targets[0].id.removeprefix("standard_").removesuffix("_fold")
                    found[_SPLIT_ALIASES.get(name, name)] = [str(v) for v in value]
        if not found:
            raise ValueError(f"{path}: no list assignments (e.g. standard_train_fold = [...]) found")
        return found
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON folds ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object split -> list of video ids")
    return load_folds(value)


@dataclass
class MoseiOptions(CorpusOptions):
    """MOSEI/MOSI options: those of :class:`CorpusOptions` (``modalities``: which of ``features`` to list, default
    all; ``speakers``: video ids, the speaker proxy) plus

    Attributes:
        features: modality -> ``.csd`` file (default: COVAREP audio, FACET 4.2 video, GloVe text).
        labels: the labels ``.csd`` (MOSEI ``All Labels`` with 7 columns, or MOSI's 1-column sentiment).
        pool: ``None``/``"none"`` for frame sequences ``(T, D)``, ``"mean"`` for ``(D,)``.
        nan_policy: ``"error"`` rejects a segment whose frames hold NaN/Inf; ``"zero"`` replaces them by 0.
        split, folds: keep only the videos of ``folds[split]`` (a mapping, or a ``.json``/``.py`` file; see
            :func:`load_folds`).
        landmarks_x_column: the column of ``x_0`` in the ``landmarks`` modality's frames (``y_0`` is 68 further).
    """

    features: Optional[dict[str, str]] = None
    labels: Optional[str] = None
    pool: Optional[str] = None
    nan_policy: str = "error"
    split: Optional[str] = None
    folds: Any = None
    landmarks_x_column: int = 299

    def check(self) -> None:
        super().check()
        if self.landmarks_x_column < 0:
            raise ValueError(f"landmarks_x_column must be >= 0, got {self.landmarks_x_column}")
        self.require_one_of("pool", (None, "none", "mean"))
        self.require_one_of("nan_policy", ("error", "zero"))
        if self.split is not None and self.folds is None:
            raise ValueError(f"split={self.split!r} needs folds (a mapping or a .json/.py file of video ids)")


class MoseiAdapter(FolderCorpus):
    """CMU-MOSEI segments from computational sequences (options: :class:`MoseiOptions`)."""

    name = "mosei"
    title = "mosei"
    default_features = MOSEI_DEFAULT_FEATURES
    default_labels = MOSEI_DEFAULT_LABELS
    options_cls = MoseiOptions
    options: MoseiOptions

    def __init__(self, root: str | Path | None = None, options: MoseiOptions | None = None,
                 **fields: Any) -> None:
        super().__init__(root, options, **fields)
        o = self.options
        self.pool = None if o.pool == "none" else o.pool
        self.nan_policy = o.nan_policy
        features = dict(o.features or self.default_features)
        unknown = sorted(set(self.modalities) - set(features))
        if unknown:
            raise ValueError(f"{self.name} has no modality {unknown}; features: {sorted(features)}")
        self.feature_files = {m: self._resolve(f) for m, f in features.items()
                              if not self.modalities or m in self.modalities}
        self.labels_file = self._resolve(o.labels or self.default_labels)
        for path in [*self.feature_files.values(), self.labels_file]:
            if not path.is_file():
                raise FileNotFoundError(f"computational sequence not found: {path}")
        self.modalities = tuple(self.feature_files)
        self.split = _SPLIT_ALIASES.get(o.split, o.split) if o.split else None
        self.split_videos: set[str] | None = None
        if self.split is not None:
            table = load_folds(o.folds)
            if self.split not in table:
                raise ValueError(f"split {o.split!r} not in folds; known: {', '.join(sorted(table))}")
            self.split_videos = set(table[self.split])
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def _resolve(self, name: str | Path) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.root / path

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}  # h5py handles do not survive pickling into worker processes
        return state

    def _data(self, path: str) -> Any:
        if self._pid != os.getpid():  # forked worker: never reuse the parent's handles
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = open_csd(path)
        return self._handles[path][1]

    def close(self) -> None:
        """Close the open ``.csd`` files."""
        for handle, _ in self._handles.values():
            handle.close()
        self._handles = {}

    def _labels(self, row: np.ndarray) -> dict[str, Any]:
        if len(row) == 7:
            return {"sentiment": float(row[0]), "emotions": [float(v > 0) for v in row[1:]]}
        if len(row) == 1:
            return {"sentiment": float(row[0])}
        raise ValueError(f"{self.labels_file}: expected 7 label columns (MOSEI) or 1 (MOSI), got {len(row)}")

    def _scan(self) -> list[ClipRecord]:
        """One record per labelled segment, ``<video>[<k>]``, in file order."""
        labels_path = str(self.labels_file)
        data = self._data(labels_path)
        videos = {m: set(self._data(str(p)).keys()) for m, p in self.feature_files.items()}
        out: list[ClipRecord] = []
        for video in data.keys():
            if (self.split_videos is not None and video not in self.split_videos) or not self.keep_speaker(video):
                continue
            values, intervals = read_video(data, video, labels_path)
            for k, (row, (start, end)) in enumerate(zip(values, intervals)):
                sid = f"{video}[{k}]"
                if not np.all(np.isfinite(row)) or not (np.isfinite(start) and np.isfinite(end) and end > start):
                    self.skip(labels_path, f"non-finite labels or bad interval {[start, end]}", id=sid)
                    continue
                sources = {m: CsdRef(str(self.feature_files[m]), video, float(start), float(end))
                           for m in self.modalities if video in videos[m]}
                out.append(ClipRecord(sid, sources, self._labels(np.asarray(row, dtype=np.float64)),
                                      {"speaker": video, "video": video}))
        if out and "emotions" in out[0].labels:
            self.label_names = {"emotions": list(MOSEI_EMOTIONS)}
        return out

    def _frames(self, record: ClipRecord, modality: str, ref: CsdRef) -> Any:
        try:
            feats, inter = read_video(self._data(ref.path), ref.video, ref.path)
        except (ValueError, OSError) as err:
            raise SampleError(record.id, f"{modality}: {err}", ref.path) from err
        mask = overlapping_frames(inter, ref.start, ref.end)
        if not mask.any():
            return None
        frames = feats[mask]
        if frames.dtype.kind in "SOU":  # word sequence -> text
            words = [w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in frames.reshape(-1)]
            return " ".join(w for w in words if w != "sp")
        frames = frames.astype(np.float32)
        bad = ~np.isfinite(frames)
        if bad.any():
            if self.nan_policy == "error":
                rows = np.flatnonzero(bad.any(axis=1)).tolist()
                raise SampleError(record.id, f"{modality} has NaN/Inf in frames {rows} of the segment "
                                  "(set nan_policy='zero' to replace them)", ref.path)
            frames[bad] = 0.0
        if modality == "landmarks":
            frames = self._landmarks(record, frames, ref)
        return frames.mean(axis=0) if self.pool == "mean" else frames

    def _landmarks(self, record: ClipRecord, frames: np.ndarray, ref: CsdRef) -> np.ndarray:
        """The 68 x/y landmark columns of a segment's frames -> normalised ``(T, 102)``."""
        x0 = self.options.landmarks_x_column
        if frames.shape[1] < x0 + 2 * N_POINTS:
            raise SampleError(record.id, f"landmarks: frames have {frames.shape[1]} columns; x_0..y_67 need "
                              f"columns {x0}..{x0 + 2 * N_POINTS - 1} (landmarks_x_column={x0})", ref.path)
        points = np.stack([frames[:, x0:x0 + N_POINTS], frames[:, x0 + N_POINTS:x0 + 2 * N_POINTS]], axis=-1)
        try:
            return landmark_frames(points, f"{ref.path} video {ref.video!r}")
        except ValueError as err:
            raise SampleError(record.id, f"landmarks: {err}", ref.path) from err

    def load(self, record: ClipRecord, modalities: Sequence[str]) -> Sample:
        """Slice each requested modality's frames to the segment; a modality with no frames is absent."""
        inputs: dict[str, Any] = {}
        empty: list[str] = []
        for modality in modalities:
            ref = record.sources.get(modality)
            if ref is None:
                continue
            value = self._frames(record, modality, ref)
            if value is None:
                empty.append(modality)
            else:
                inputs[modality] = value
        refs = list(record.sources.values())
        meta: dict[str, Any] = {"interval": (refs[0].start, refs[0].end)} if refs else {}
        if empty:
            meta["no_frames"] = empty
        return Sample(record.id, inputs, dict(record.labels), dict(record.groups), meta)


@register_adapter("mosi")
class MosiAdapter(MoseiAdapter):
    """CMU-MOSI: same layout as MOSEI, sentiment label only."""

    name = "mosi"
    title = "mosi"
    default_features = MOSI_DEFAULT_FEATURES
    default_labels = MOSI_DEFAULT_LABELS


register_adapter("mosei")(MoseiAdapter)
