"""Bounded and honest decoding: no more audio decoded than the preprocessors keep (even with the adapter's
``max_seconds`` unset), truncated media detected against the declared duration (skip or keep-with-warning), and a
missing stream named. Synthetic files written with soundfile / PyAV; cut copies of the shared recordings when
``../shared/data`` is there."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from contrastive_mer.data.dataset import MERDataset, PreparedSample
from contrastive_mer.data.datasets import build_adapter
from contrastive_mer.data.decode_window import decode_window
from contrastive_mer.data.kinds import (
    Frames,
    FramesConfig,
    LogMel,
    LogMelConfig,
    LogMelStats,
    LogMelStatsConfig,
    OpenSmileConfig,
)
from contrastive_mer.data.media import MediaError, MediaOptions, load_audio, load_media, load_video
from contrastive_mer.data.truncation import wav_declared_frames
from tests.data.test_media import moving_frames, sine

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


# ------------------------------------------------------------------------------------------------ helpers
def write_multichannel(path: Path, rate: int, seconds: float, channels: int) -> np.ndarray:
    """A ``channels``-channel float file (WAV/FLAC through soundfile, ``.mka`` through PyAV); returns the
    channel mean as float64."""
    t = np.arange(int(rate * seconds)) / rate
    wave = np.stack([0.1 * (c + 1) * np.sin(2 * np.pi * (220 + 50 * c) * t) for c in range(channels)], axis=1)
    if path.suffix != ".mka":
        sf.write(path, wave.astype(np.float32), rate, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
        return sf.read(path, dtype="float64")[0].mean(axis=1)
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_f32le", rate=rate, layout=layout)
        for start in range(0, len(wave), 9600):
            block = np.ascontiguousarray(wave[start:start + 9600].astype(np.float32).reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return wave.astype(np.float32).mean(axis=1, dtype=np.float64)


def write_av(path: Path, seconds: float = 4.0, audio: bool = True, video: bool = True) -> Path:
    """An H.264 + AAC MP4 (index at the front, as RAVDESS has it) or an FLV (FLV1 + MP3) of ``seconds``."""
    fps, rate = 25, 44100
    options = {"movflags": "faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as out:
        vs = as_ = None
        if video:
            vs = out.add_stream("libx264" if path.suffix == ".mp4" else "flv", rate=fps)
            vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
        if audio:
            as_ = out.add_stream("aac" if path.suffix == ".mp4" else "libmp3lame", rate=rate, layout="mono")
        if vs is not None:
            for img in moving_frames(int(seconds * fps)):
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if as_ is not None:
            wave = sine(330, rate, seconds)
            step = as_.codec_context.frame_size or 1024
            for start in range(0, len(wave), step):
                frame = av.AudioFrame.from_ndarray(wave[None, start:start + step], format="fltp", layout="mono")
                frame.sample_rate = rate
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode(None):
                out.mux(packet)
    return path


def cut(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``src``'s bytes, as a cut download would leave it."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def peak_bytes(call, *args, **kwargs) -> int:
    tracemalloc.start()
    try:
        call(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------------- decode window
def logmel(seconds: float | None, source: str | None = None) -> LogMel:
    prep = LogMel(LogMelConfig(n_mels=32, max_seconds=seconds))
    prep.source = source
    return prep


def test_decode_window_is_the_longest_audio_any_preprocessor_keeps() -> None:
    frames = Frames(FramesConfig())
    assert decode_window({"audio": logmel(2.0), "video": frames}, 16000) == 2.0
    stats = LogMelStats(LogMelStatsConfig(n_mels=32, input_dim=64, max_seconds=5.0))
    stats.source = "audio"
    assert decode_window({"audio": logmel(2.0), "pooled": stats}, 16000) == 5.0
    assert decode_window({"audio": logmel(2.0), "pooled": logmel(None, "audio")}, 16000) is None  # one reads all
    assert decode_window({"speech": logmel(2.0, "audio")}, 8000) == 4.0  # 32000 samples of 8 kHz input
    assert decode_window({"video": frames}, 16000) is None  # nothing reads audio
    assert decode_window({"mel2": logmel(3.0, "audio2")}, 16000) is None  # another input
    assert OpenSmileConfig().max_seconds == 8.0  # the openSMILE preprocessor trims alike (tested in its module)


@pytest.mark.parametrize("ext", [".flac", ".mka"])
def test_capped_decode_gives_the_same_kept_audio_as_a_full_decode(tmp_path: Path, ext: str) -> None:
    """44.1 kHz stereo -> 16 kHz: the first 2 s decoded with ``decode_seconds=2`` equal a full decode's (the
    resampler sees the samples after the window), and so does the log-mel of them."""
    path = tmp_path / f"a{ext}"
    write_multichannel(path, 44100, 12.0, 2)
    full = load_audio(path, 16000)
    capped = load_audio(path, 16000, decode_seconds=2.0)
    assert 32000 <= len(capped) < 40000 < len(full)
    np.testing.assert_allclose(capped[:32000], full[:32000], atol=1e-6, rtol=0)
    torch.testing.assert_close(logmel(2.0)(capped), logmel(2.0)(full), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("ext", [".flac", ".mka"])
def test_long_96k_6ch_audio_is_decoded_only_as_far_as_kept(tmp_path: Path, ext: str) -> None:
    """60 s of 96 kHz 6-channel audio, 2 s kept: the capped decode allocates a fraction of the full one (which
    holds the whole mono signal, 23 MB, and resamples it)."""
    path = tmp_path / f"long{ext}"
    write_multichannel(path, 96000, 60.0, 6)
    mono = 60 * 96000 * 4
    capped = peak_bytes(load_audio, path, 16000, decode_seconds=2.0)
    full = peak_bytes(load_audio, path, 16000)
    assert capped < mono / 2 < full, (capped, full)
    assert capped * 4 < full


def manifest_dataset(tmp_path: Path, audio: Path, seconds: float | None) -> MERDataset:
    (tmp_path / "m.csv").write_text(f"id,audio\nclip,{audio}\n")
    adapter = build_adapter("manifest", root=str(tmp_path), path="m.csv")
    return MERDataset(adapter, adapter.records(), {"audio": logmel(seconds)}, cache="none")


def test_dataset_decodes_only_the_preprocessor_window_with_max_seconds_unset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real path (manifest adapter, max_seconds unset, log-mel keeping 2 s): the decoder is asked for
    2 s, the options are restored after the load, and the tensor equals the one from a full decode."""
    path = tmp_path / "long.flac"
    write_multichannel(path, 96000, 20.0, 6)
    import contrastive_mer.data.media as media

    asked: list[float | None] = []
    real = media.load_audio

    def spy(*args, **kwargs):
        asked.append(kwargs.get("decode_seconds"))
        return real(*args, **kwargs)

    monkeypatch.setattr(media, "load_audio", spy)
    capped = manifest_dataset(tmp_path, path, 2.0)
    item = capped[0]
    assert isinstance(item, PreparedSample) and asked == [2.0]
    assert capped.adapter.media.decode_seconds is None and capped.adapter.media.max_seconds is None
    unbounded = manifest_dataset(tmp_path, path, None)  # a preprocessor reading everything: no cap
    unbounded[0]
    assert asked == [2.0, None]
    reference = logmel(2.0)(real(path, 16000))
    torch.testing.assert_close(item.tensors["audio"], reference, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------------------------------ truncation
def test_cut_flac_is_skipped_or_kept_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "a.flac"
    sf.write(src, np.tile(sine(300, 16000, 1.0), 5) + 0.01 * np.random.default_rng(0).standard_normal(80000)
             .astype(np.float32), 16000)
    assert len(load_audio(src)) == 80000
    half = cut(src, tmp_path / "half.flac", 0.5)
    with pytest.raises(MediaError, match=r"truncated audio: .* of the 5\.00 s the file declares") as info:
        load_audio(half)
    assert info.value.path == str(half)
    with caplog.at_level(logging.WARNING, logger="contrastive_mer.data.truncation"):
        partial = load_audio(half, truncated="keep")
    assert 0 < len(partial) < 60000
    assert "truncated audio" in caplog.text and str(half) in caplog.text
    assert len(load_audio(half, max_seconds=0.5)) == 8000  # the cut lies after what is kept: nothing to report
    with pytest.raises(ValueError, match="truncated must be one of"):
        load_audio(src, truncated="ignore")


def test_cut_wav_is_detected_from_its_riff_header(tmp_path: Path) -> None:
    """libsndfile and FFmpeg report the frames a cut WAV still holds; the RIFF header's data size says more."""
    src = tmp_path / "a.wav"
    with sf.SoundFile(src, "w", 16000, 1, "PCM_16") as f:  # a LIST chunk after fmt, as many writers add
        f.write(sine(300, 16000, 4.0))
        f.title = "clip"
    assert wav_declared_frames(src) == 64000 and len(load_audio(src)) == 64000
    half = cut(src, tmp_path / "half.wav", 0.5)
    assert wav_declared_frames(half) == 64000 and sf.info(half).frames < 33000
    with pytest.raises(MediaError, match=r"truncated audio: .* of the 4\.00 s the file declares"):
        load_audio(half)
    assert 0 < len(load_audio(half, truncated="keep")) < 33000
    assert wav_declared_frames(tmp_path / "nowhere.wav") is None
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00")
    assert wav_declared_frames(tmp_path / "junk.wav") is None


@pytest.mark.parametrize("ext", [".mp4", ".flv"])
def test_cut_video_files_are_skipped_or_kept(tmp_path: Path, ext: str) -> None:
    src = write_av(tmp_path / f"a{ext}")
    assert load_video(src, num_frames=8, size=None).shape == (8, 64, 96, 3)
    assert len(load_audio(src)) > 3.5 * 16000
    short = cut(src, tmp_path / f"cut{ext}", 0.3)
    with pytest.raises(MediaError, match="truncated video"):
        load_video(short, num_frames=8)
    with pytest.raises(MediaError, match="truncated audio"):
        load_audio(short)
    with pytest.raises(MediaError, match="truncated video"):
        load_media(short, short, MediaOptions())
    kept = load_media(short, short, MediaOptions(truncated="keep"))
    assert kept["video"].shape[0] == 8 and 0 < len(kept["audio"]) < 2 * 16000
    with pytest.raises(MediaError, match="truncated video"):
        load_video(short, num_frames=None, fps=5.0)  # fps sampling runs to the end too


def test_missing_stream_is_named(tmp_path: Path) -> None:
    """An MP4 missing one stream: the error names the missing stream and what the file holds."""
    silent = write_av(tmp_path / "v.mp4", audio=False)
    with pytest.raises(MediaError, match=r"no audio stream \(the file has: video h264\)"):
        load_media(silent, silent, MediaOptions())
    blind = write_av(tmp_path / "a.mp4", video=False)
    with pytest.raises(MediaError, match=r"no video stream \(the file has: audio aac\)"):
        load_video(blind)
    assert load_media(blind, None, MediaOptions())["audio"].size > 0


def test_adapter_option_truncated_reaches_the_decoder(tmp_path: Path) -> None:
    src = tmp_path / "a.flac"
    sf.write(src, np.tile(sine(300, 16000, 1.0), 5), 16000)
    half = cut(src, tmp_path / "half.flac", 0.5)
    (tmp_path / "m.csv").write_text(f"id,audio\nclip,{half}\n")
    skip = build_adapter("manifest", root=str(tmp_path), path="m.csv")
    keep = build_adapter("manifest", root=str(tmp_path), path="m.csv", truncated="keep")
    prep = {"audio": logmel(8.0)}
    skipped = MERDataset(skip, skip.records(), prep, cache="none")[0]
    assert not isinstance(skipped, PreparedSample) and "truncated audio" in skipped.reason
    assert isinstance(MERDataset(keep, keep.records(), prep, cache="none")[0], PreparedSample)
    with pytest.raises(ValueError, match="truncated must be one of"):
        build_adapter("manifest", root=str(tmp_path), path="m.csv", truncated="maybe")


SHARED = [("ravdess/Actor_01/03-*.flac", 0.5), ("ravdess/Actor_01/03-*.wav", 0.5), ("ravdess/Actor_01/01-*.mp4", 0.3),
          ("cremad/VideoFlash/*.flv", 0.3), ("cremad/AudioMP3/*.mp3", 0.3)]


@pytest.mark.parametrize("pattern,fraction", SHARED)
def test_cut_copies_of_shared_recordings_are_detected(tmp_path: Path, pattern: str, fraction: float) -> None:
    """The shared recordings decode without a truncation report; copies cut to 50% (FLAC) or 30% (MP4, FLV) are
    reported for every stream they hold."""
    files = sorted(DATA.glob(pattern))[:3]
    if not files:
        pytest.skip(f"shared recordings not found at {DATA} ({pattern})")
    for path in files:
        load_audio(path)
        short = cut(path, tmp_path / path.name, fraction)
        with pytest.raises(MediaError, match="truncated audio"):
            load_audio(short)
        if path.suffix in (".mp4", ".flv"):
            load_video(path)
            with pytest.raises(MediaError, match="truncated video"):
                load_video(short)


def test_flv_with_a_short_video_stream_is_not_taken_for_a_cut_file(tmp_path: Path) -> None:
    """FLV declares one duration for the file: a complete file whose video ends before its audio is kept whole,
    while the same file cut in half is still reported."""
    from contrastive_mer.data.media import load_audio_video
    from tests.data.test_media import colour_frames, write_video

    path = write_video(tmp_path / "short_video.flv", colour_frames(2), codec="flv",
                       audio=np.sin(np.linspace(0, 900, 22050)).astype(np.float32) * 0.5, audio_rate=22050,
                       audio_codec="libmp3lame")
    audio, video = load_audio_video(path, 16000, num_frames=1, size=16)
    assert video.shape == (1, 16, 16, 3) and abs(len(audio) / 16000 - 1.0) < 0.1
    cut = tmp_path / "cut.flv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MediaError, match="truncated"):
        load_audio_video(cut, 16000, num_frames=1, size=16)
