"""The embedded synthetic corpus: procedurally generated, seeded clips of S speakers x K emotions, no files.

Each clip has a latent emotion state ``(valence, arousal, dominance)`` = intensity x class prototype + a
clip-level deviation. The face video, the voice and the transcript all read that one state, each with its own
noise, so the modalities agree on more than the class (what cross-modal contrastive learning can find) while no
single modality is perfect (what fusion improves on). Speaker traits (face shape and colours, voice pitch and
timbre, verbal fillers) are a second factor shared across modalities, as in real data.

Content depends only on ``(seed, clip index)``: independent random streams per clip and modality make the
output identical across reruns, DataLoader workers and modality subsets.

Use :class:`SyntheticCorpus` directly, or ``build_adapter("synthetic", num_speakers=..., ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Sequence

import numpy as np

from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, SampleError, register_adapter
from contrastive_mer.data.datasets.synthetic_audio import VoiceTraits, sample_voice_traits, synthesize_voice
from contrastive_mer.data.datasets.synthetic_face import FaceTraits, draw_face, face_landmarks, sample_face_traits
from contrastive_mer.data.datasets.synthetic_text import TextTraits, make_sentence, sample_text_traits
from contrastive_mer.data.landmarks import landmark_frames
from contrastive_mer.data.sample import Sample

#: class names in label-code order; the first ``num_emotions`` are used
EMOTION_NAMES: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "surprised", "calm", "disgusted")
#: class prototypes in (valence, arousal, dominance), same order as :data:`EMOTION_NAMES`
PROTOTYPES = np.array([
    [0.0, 0.0, 0.0],     # neutral
    [0.9, 0.4, 0.3],     # happy
    [-0.7, -0.8, -0.5],  # sad
    [-0.6, 0.8, 0.9],    # angry
    [-0.6, 0.7, -0.8],   # fearful
    [0.4, 0.9, -0.1],    # surprised
    [0.3, -0.6, 0.1],    # calm
    [-0.8, 0.1, 0.4],    # disgusted
])
#: the default modalities (what the demo uses)
SYNTHETIC_MODALITIES: tuple[str, ...] = ("video", "audio", "text")
#: every modality the corpus can generate: plus ``landmarks``, the 2-D face points of the drawn face
AVAILABLE_MODALITIES: tuple[str, ...] = (*SYNTHETIC_MODALITIES, "landmarks")
_STREAM = {"latent": 1, "video": 2, "audio": 3, "text": 4, "missing": 5, "speaker": 6, "landmarks": 7}


@dataclass
class SyntheticConfig:
    """Size, format and difficulty of the synthetic corpus.

    Attributes:
        seed: corpus seed; with the clip index it fixes every clip's content.
        num_speakers, num_emotions, clips_per_speaker_emotion: corpus size (``num_emotions`` <= 8).
        speakers: speaker indices listed by :meth:`SyntheticCorpus.records` (None: all). Clip content does
            not depend on this, so ``speakers=[0..7]`` and ``speakers=[8..11]`` are disjoint parts of one corpus.
        modalities: the modalities the corpus provides (subset of video, audio, text, landmarks).
        num_frames, frame_size: video clip shape ``(num_frames, frame_size, frame_size, 3)``.
        landmark_frames: frames of the ``landmarks`` modality: ``(landmark_frames, 102)``, the 51 non-jaw points
            of the face :func:`~.synthetic_face.draw_face` draws (same expression parameters, read from the
            clip's state with their own noise), min-max normalised per clip like OpenFace landmarks.
        sample_rate, min_seconds, max_seconds: audio format and duration range.
        text_emotion_word_fraction: mean fraction of transcripts that contain an emotion word.
        text_confusion: probability that such a word names a neighbouring emotion instead.
        missing_fraction: fraction of clips lacking one (randomly chosen) modality; never all of them.
        noise: global multiplier of all per-modality noise (read noise, pose jitter, pixel and audio noise).
        latent_spread: std of the clip-level deviation of the latent state (shared by all modalities).
        min_intensity: clip expression intensity is uniform in ``[min_intensity, 1]``.
        video_signal, audio_signal: how strongly the latent state moves the face / the voice.
        pixel_noise: std of additive pixel noise (grey levels) at ``noise=1``.
        audio_noise_floor: std of additive background noise at ``noise=1``.
        speaker_spread: scales between-speaker variation of face and voice traits around the average face and
            voice (1: the default spread, 0: every speaker looks and sounds alike; verbal fillers unchanged).
    """

    seed: int = 0
    num_speakers: int = 12
    num_emotions: int = 6
    clips_per_speaker_emotion: int = 8
    speakers: list[int] | None = None
    modalities: tuple[str, ...] = SYNTHETIC_MODALITIES
    num_frames: int = 8
    frame_size: int = 64
    landmark_frames: int = 30
    sample_rate: int = 16000
    min_seconds: float = 1.0
    max_seconds: float = 2.0
    text_emotion_word_fraction: float = 0.3
    text_confusion: float = 0.1
    missing_fraction: float = 0.1
    noise: float = 1.0
    latent_spread: float = 0.3
    min_intensity: float = 0.5
    video_signal: float = 1.0
    audio_signal: float = 1.0
    pixel_noise: float = 8.0
    audio_noise_floor: float = 0.004
    speaker_spread: float = 1.0

    def __post_init__(self) -> None:
        self.modalities = tuple(str(m) for m in self.modalities)
        if self.speakers is not None:
            self.speakers = [int(s) for s in self.speakers]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first offending field."""

        def bad(key: str, expected: str) -> None:
            raise ValueError(f"synthetic config: {key}={getattr(self, key)!r}, expected {expected}")

        for key in ("num_speakers", "clips_per_speaker_emotion", "num_frames", "sample_rate", "landmark_frames"):
            if int(getattr(self, key)) < 1:
                bad(key, "an integer >= 1")
        if self.frame_size < 16:
            bad("frame_size", "an integer >= 16")
        if not 2 <= self.num_emotions <= len(EMOTION_NAMES):
            bad("num_emotions", f"an integer in [2, {len(EMOTION_NAMES)}]")
        if self.speakers is not None and (not self.speakers or len(set(self.speakers)) != len(self.speakers)
                                          or not all(0 <= s < self.num_speakers for s in self.speakers)):
            bad("speakers", f"None or distinct speaker indices in [0, {self.num_speakers})")
        if not self.modalities or not set(self.modalities) <= set(AVAILABLE_MODALITIES):
            bad("modalities", f"a non-empty subset of {AVAILABLE_MODALITIES}")
        if not 0 < self.min_seconds <= self.max_seconds:
            bad("max_seconds", f"a duration >= min_seconds={self.min_seconds} > 0")
        for key in ("text_emotion_word_fraction", "text_confusion", "missing_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                bad(key, "a fraction in [0, 1]")
        if not 0.0 <= self.min_intensity <= 1.0:
            bad("min_intensity", "a value in [0, 1]")
        for key in ("noise", "latent_spread", "video_signal", "audio_signal", "pixel_noise", "audio_noise_floor",
                    "speaker_spread"):
            if getattr(self, key) < 0:
                bad(key, "a value >= 0")


@dataclass(frozen=True)
class SpeakerTraits:
    """One speaker's face, voice and verbal habits."""

    face: FaceTraits
    voice: VoiceTraits
    text: TextTraits


@dataclass(frozen=True)
class ClipLatent:
    """The hidden variables of one clip, shared by all its modalities."""

    index: int
    speaker: int
    emotion: int
    clip: int
    intensity: float
    state: np.ndarray = field(repr=False)


def speaker_name(speaker: int) -> str:
    """Group value of speaker index ``speaker`` (``3`` -> ``"s03"``)."""
    return f"s{int(speaker):02d}"


@register_adapter("synthetic")
class SyntheticCorpus(CorpusAdapter):
    """Procedurally generated multimodal emotion corpus (see the module docstring).

    Build it from a :class:`SyntheticConfig` or from its fields as keyword arguments.
    """

    name = "synthetic"
    modalities = AVAILABLE_MODALITIES
    options_cls = SyntheticConfig
    options: SyntheticConfig

    def __init__(self, config: SyntheticConfig | dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(config, **fields)
        config = self.options
        self.config = config
        self.modalities = tuple(config.modalities)
        self.label_names = {"emotion": list(EMOTION_NAMES[:config.num_emotions])}
        self._mean_intensity = (config.min_intensity + 1.0) / 2.0

    # ----- indexing -------------------------------------------------------------------------------------------
    def clip_index(self, speaker: int, emotion: int, clip: int) -> int:
        """Global index of a clip (independent of which speakers are listed)."""
        c = self.config
        return (speaker * c.num_emotions + emotion) * c.clips_per_speaker_emotion + clip

    def clip_id(self, index: int) -> str:
        """Id of the clip at global ``index``, e.g. ``syn-s03-e2-c05``."""
        s, e, c = self._unravel(index)
        return f"syn-{speaker_name(s)}-e{e}-c{c:02d}"

    def _unravel(self, index: int) -> tuple[int, int, int]:
        c = self.config
        rest, clip = divmod(int(index), c.clips_per_speaker_emotion)
        speaker, emotion = divmod(rest, c.num_emotions)
        return speaker, emotion, clip

    def _rng(self, stream: str, index: int) -> np.random.Generator:
        return np.random.default_rng([int(self.config.seed), _STREAM[stream], int(index)])

    @cached_property
    def _speaker_traits(self) -> list[SpeakerTraits]:
        out = []
        for s in range(self.config.num_speakers):
            rng = self._rng("speaker", s)
            spread = self.config.speaker_spread
            out.append(SpeakerTraits(sample_face_traits(rng, spread), sample_voice_traits(rng, spread),
                                     sample_text_traits(rng)))
        return out

    @cached_property
    def _neighbours(self) -> list[str]:
        """For each emotion, the nearest other emotion (by prototype distance): the text confusion target."""
        protos = PROTOTYPES[:self.config.num_emotions]
        dist = np.linalg.norm(protos[:, None] - protos[None], axis=-1)
        np.fill_diagonal(dist, np.inf)
        return [EMOTION_NAMES[int(j)] for j in dist.argmin(axis=1)]

    def speaker_traits(self, speaker: int) -> SpeakerTraits:
        """The traits of speaker index ``speaker``."""
        return self._speaker_traits[speaker]

    def latent(self, index: int) -> ClipLatent:
        """The hidden variables of the clip at global ``index``."""
        speaker, emotion, clip = self._unravel(index)
        rng = self._rng("latent", index)
        intensity = float(rng.uniform(self.config.min_intensity, 1.0))
        state = intensity * PROTOTYPES[emotion] + self.config.latent_spread * rng.standard_normal(3)
        return ClipLatent(int(index), speaker, emotion, clip, intensity, state)

    def present_modalities(self, index: int) -> tuple[str, ...]:
        """The modalities clip ``index`` has (one may be dropped, never all)."""
        mods = self.modalities
        rng = self._rng("missing", index)
        if len(mods) > 1 and rng.uniform() < self.config.missing_fraction:
            drop = mods[int(rng.integers(len(mods)))]
            return tuple(m for m in mods if m != drop)
        return mods

    # ----- adapter contract ----------------------------------------------------------------------------------
    def _scan(self) -> list[ClipRecord]:
        """Clips of the listed speakers, ordered by speaker, emotion, clip. Sources hold the global index."""
        c = self.config
        speakers = c.speakers if c.speakers is not None else range(c.num_speakers)
        out = []
        for s in speakers:
            for e in range(c.num_emotions):
                for k in range(c.clips_per_speaker_emotion):
                    index = self.clip_index(s, e, k)
                    out.append(ClipRecord(id=self.clip_id(index),
                                          sources={m: index for m in self.present_modalities(index)},
                                          labels={"emotion": e}, groups={"speaker": speaker_name(s)}))
        return out

    def __len__(self) -> int:
        c = self.config
        n_speakers = len(c.speakers) if c.speakers is not None else c.num_speakers
        return n_speakers * c.num_emotions * c.clips_per_speaker_emotion

    def _index_of(self, record: ClipRecord) -> int:
        c = self.config
        total = c.num_speakers * c.num_emotions * c.clips_per_speaker_emotion
        values = list(record.sources.values())
        if not values or not all(isinstance(v, (int, np.integer)) and v == values[0] for v in values):
            raise SampleError(record.id, f"expected one synthetic clip index in sources, got {record.sources!r}")
        index = values[0]
        if not 0 <= index < total or self.clip_id(index) != record.id:
            raise SampleError(record.id, f"source {index!r} is not a clip of this synthetic corpus "
                                         f"(seed={c.seed}, {total} clips)")
        return int(index)

    def load(self, record: ClipRecord, modalities: Sequence[str]) -> Sample:
        """Generate the requested modalities that ``record`` has (others are absent from ``inputs``)."""
        index = self._index_of(record)
        lat = self.latent(index)
        traits = self._speaker_traits[lat.speaker]
        c = self.config
        inputs: dict[str, Any] = {}
        for m in modalities:
            if m not in record.sources:
                continue
            rng = self._rng(m, index)
            if m == "video":
                inputs[m] = draw_face(traits.face, lat.state, rng, num_frames=c.num_frames,
                                      image_size=c.frame_size, signal=c.video_signal, noise=c.noise,
                                      pixel_noise=c.pixel_noise)
            elif m == "audio":
                inputs[m] = synthesize_voice(traits.voice, lat.state, rng, sample_rate=c.sample_rate,
                                             min_seconds=c.min_seconds, max_seconds=c.max_seconds,
                                             signal=c.audio_signal, noise=c.noise,
                                             noise_floor=c.audio_noise_floor)
            elif m == "landmarks":
                points = face_landmarks(traits.face, lat.state, rng, num_frames=c.landmark_frames,
                                        signal=c.video_signal, noise=c.noise)
                inputs[m] = landmark_frames(points, record.id)
            elif m == "text":
                inputs[m] = make_sentence(traits.text, EMOTION_NAMES[lat.emotion], self._neighbours[lat.emotion],
                                          lat.state, intensity=lat.intensity, rng=rng,
                                          emotion_word_fraction=c.text_emotion_word_fraction,
                                          confusion=c.text_confusion, mean_intensity=self._mean_intensity)
        meta = {"synthetic_index": index, "intensity": lat.intensity, "state": lat.state.tolist()}
        return Sample(id=record.id, inputs=inputs, labels=dict(record.labels), groups=dict(record.groups),
                      meta=meta)


def split_speakers(corpus_or_records: CorpusAdapter | Iterable[ClipRecord],
                   held_out: Iterable[int | str]) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Split records into ``(kept, held_out)`` by their ``speaker`` group.

    ``held_out`` holds speaker indices (``8``) or group values (``"s08"``). Raises ``ValueError`` if a
    held-out speaker has no record, or a record lacks a ``speaker`` group.
    """
    records = corpus_or_records.records() if isinstance(corpus_or_records, CorpusAdapter) \
        else list(corpus_or_records)
    wanted = {speaker_name(s) if isinstance(s, (int, np.integer)) else str(s) for s in held_out}
    kept: list[ClipRecord] = []
    held: list[ClipRecord] = []
    for r in records:
        if "speaker" not in r.groups:
            raise ValueError(f"record {r.id!r} has no 'speaker' group")
        (held if r.groups["speaker"] in wanted else kept).append(r)
    missing = wanted - {r.groups["speaker"] for r in held}
    if missing:
        raise ValueError(f"held-out speaker(s) {sorted(missing)} not found among the records")
    return kept, held
