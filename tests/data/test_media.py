"""Audio/video decoding and face cropping against known values (files written here with soundfile and PyAV)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from contrastive_mer.data import decoding, video_io
from contrastive_mer.data.face import FaceCropper, center_crop, square_box
from contrastive_mer.data.media import (
    DecodeLimits,
    MediaError,
    MediaOptions,
    load_audio,
    load_audio_video,
    load_media,
    load_video,
    uniform_indices,
)

COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (128, 128, 128)]


# ------------------------------------------------------------------------------------------------ helpers
def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def colour_frames(n_per_colour: int = 5, width: int = 64, height: int = 48) -> list[np.ndarray]:
    return [np.full((height, width, 3), c, np.uint8) for c in COLOURS for _ in range(n_per_colour)]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4",
                audio: np.ndarray | None = None, audio_rate: int = 16000, audio_codec: str = "aac") -> Path:
    """Write RGB ``frames`` (and optionally mono float ``audio``) with PyAV."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.options = {"qscale": "2"} if codec in ("mpeg4", "flv") else {}
        if audio is not None:
            ast = out.add_stream(audio_codec, rate=audio_rate, layout="mono")
        for img in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if audio is not None:
            fmt = ast.codec_context.format.name
            step = ast.codec_context.frame_size or 1024
            for start in range(0, len(audio), step):
                chunk = audio[None, start:start + step]
                if fmt.startswith(("s16", "s32")):
                    bits = 16 if fmt.startswith("s16") else 32
                    chunk = (chunk.astype(np.float64) * (2 ** (bits - 1) - 1)).astype(f"int{bits}")
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt, layout="mono")
                frame.sample_rate, frame.pts = audio_rate, start
                for packet in ast.encode(frame):
                    out.mux(packet)
            for packet in ast.encode():
                out.mux(packet)
    return path


def mean_colour(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(-1, 3).mean(axis=0)


# ---------------------------------------------------------------------------------------------------- audio
def test_resample_48k_stereo_keeps_frequency_and_mixes_to_mono(tmp_path: Path) -> None:
    left, right = sine(440, 48000, 2.0, 0.5), sine(440, 48000, 2.0, 0.3)
    path = tmp_path / "tone.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000)
    out = load_audio(path, sample_rate=16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 32000) <= 1
    assert abs(peak_hz(out, 16000) - 440) <= 16000 / len(out)
    core = out[800:-800]  # away from the filter edges
    assert np.sqrt(np.mean(core ** 2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.01)
    ref = resample_poly((left + right) / 2, 1, 3)  # peer implementation
    assert np.corrcoef(core, ref[800:len(out) - 800])[0, 1] > 0.999


def test_flac_44k_trimmed_by_max_seconds(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, sine(1000, 44100, 1.5), 44100)
    out = load_audio(path, sample_rate=16000, max_seconds=0.5)
    assert len(out) == 8000
    assert abs(peak_hz(out, 16000) - 1000) <= 2


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("channels", [1, 2])
def test_ffmpeg_path_matches_soundfile(tmp_path: Path, subtype: str, channels: int) -> None:
    rng = np.random.default_rng(0)
    data = np.clip(rng.normal(0, 0.2, (4000, channels)), -0.99, 0.99)
    wav = tmp_path / "x.wav"
    sf.write(wav, data, 16000, subtype=subtype)
    other = tmp_path / "x.bin"  # not a soundfile extension: decoded by FFmpeg (probed as WAV)
    other.write_bytes(wav.read_bytes())
    a, b = load_audio(wav), load_audio(other)
    assert a.shape == b.shape == (4000,)
    np.testing.assert_allclose(b, a, atol=1e-6)
    np.testing.assert_allclose(a, data.mean(axis=1), atol=1e-2 if subtype == "PCM_U8" else 1e-4)


def test_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(MediaError, match="nope.wav: file not found") as info:
        load_audio(missing)
    assert info.value.path == str(missing) and info.value.reason == "file not found"
    empty = tmp_path / "empty.mp3"
    empty.touch()
    with pytest.raises(MediaError, match="empty.mp3: empty file"):
        load_audio(empty)
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio at all\n" * 20)
    with pytest.raises(MediaError, match="notes.mp3"):
        load_audio(text)


def test_silent_nan_zero_length_and_rates(tmp_path: Path) -> None:
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(MediaError, match="silent"):
        load_audio(tmp_path / "silent.wav")
    quiet = load_audio(tmp_path / "silent.wav", reject_silent=False)
    assert quiet.shape == (16000,) and not quiet.any()
    bad = sine(300, 16000, 0.5)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match="NaN"):
        load_audio(tmp_path / "nan.wav")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(MediaError, match="zero-length"):
        load_audio(tmp_path / "zero.wav")
    for rate in (500, 400000):
        sf.write(tmp_path / f"r{rate}.wav", sine(100, rate, 0.5), rate)
        with pytest.raises(MediaError, match=f"unsupported sample rate {rate}"):
            load_audio(tmp_path / f"r{rate}.wav")
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(tmp_path / "nan.wav", sample_rate=10)


# ---------------------------------------------------------------------------------------------------- video
@pytest.mark.parametrize("ext,codec,acodec", [(".mp4", "mpeg4", "aac"), (".flv", "flv", "libmp3lame"),
                                              (".mkv", "libx264", "aac")])
def test_video_frames_and_audio_from_one_container(tmp_path: Path, ext: str, codec: str, acodec: str) -> None:
    rate = 22050 if acodec == "libmp3lame" else 16000
    tone = sine(700, rate, 2.0)
    path = write_video(tmp_path / f"clip{ext}", colour_frames(), codec=codec, audio=tone, audio_rate=rate,
                       audio_codec=acodec)
    frames = load_video(path, num_frames=4, size=32)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    for frame, colour in zip(frames, COLOURS, strict=True):  # uniform picks ordinals 2, 7, 12, 17 -> one per colour
        np.testing.assert_allclose(mean_colour(frame), colour, atol=12)
    every = load_video(path, num_frames=20, size=16)
    assert [int(np.argmin([np.abs(mean_colour(f) - c).sum() for c in COLOURS])) for f in every] == \
        [k // 5 for k in range(20)]
    audio, video = load_audio_video(path, sample_rate=16000, num_frames=4, size=32)
    np.testing.assert_array_equal(video, frames)
    assert abs(len(audio) - 32000) < 2000  # codec padding/priming only
    assert abs(peak_hz(audio, 16000) - 700) <= 2
    assert np.array_equal(load_audio(path), audio)


def test_fps_sampling_and_repeats(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.mp4", colour_frames())  # 20 frames at 10 fps
    at2 = load_video(path, num_frames=None, fps=2, size=16)  # t = 0, .5, 1, 1.5 -> frames 0, 5, 10, 15
    assert at2.shape[0] == 4
    for frame, colour in zip(at2, COLOURS, strict=True):
        np.testing.assert_allclose(mean_colour(frame), colour, atol=12)
    assert load_video(path, num_frames=3, fps=2, size=16).shape[0] == 3  # num_frames caps fps mode
    assert load_video(path, num_frames=None, fps=20, size=16).shape[0] == 40  # held frames repeat
    many = load_video(path, num_frames=30, size=16)  # more frames than the clip has: repeats, in order
    assert many.shape[0] == 30
    assert uniform_indices(20, 30) == sorted(uniform_indices(20, 30))
    assert uniform_indices(20, 4) == [2, 7, 12, 17]


def test_crop_modes_geometry(tmp_path: Path) -> None:
    img = np.full((32, 64, 3), COLOURS[0], np.uint8)
    img[:, :16] = COLOURS[2]  # blue left border, 16 px
    path = write_video(tmp_path / "g.mp4", [img] * 3)
    centre = load_video(path, num_frames=1, size=32, crop="center")[0]  # columns 16..48: all red
    np.testing.assert_allclose(mean_colour(centre), COLOURS[0], atol=12)
    squeezed = load_video(path, num_frames=1, size=32, crop="none")[0]  # whole frame: border kept (8 px)
    np.testing.assert_allclose(mean_colour(squeezed[:, :6]), COLOURS[2], atol=20)
    native = load_video(path, num_frames=1, size=None)
    assert native.shape == (1, 32, 64, 3)
    cropper = FaceCropper()
    face = load_video(path, num_frames=2, size=32, crop="face", face_detector=cropper)
    assert face.shape == (2, 32, 32, 3) and (cropper.calls, cropper.fallbacks) == (2, 2)  # no face: centre
    np.testing.assert_allclose(mean_colour(face[0]), COLOURS[0], atol=12)


def test_stream_errors(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, sine(200, 16000, 0.5), 16000)
    with pytest.raises(MediaError, match="a.wav: .*no video stream"):
        load_video(wav)
    silent_video = write_video(tmp_path / "v.mp4", colour_frames(2))
    with pytest.raises(MediaError, match="v.mp4: no audio stream"):
        load_audio(silent_video)
    with pytest.raises(ValueError, match="crop"):
        load_video(silent_video, crop="square")


def test_decode_limits(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.mp4", colour_frames(), audio=sine(500, 16000, 2.0))
    with pytest.raises(MediaError, match="c.mp4: decode limit reached \\(3 packets\\)"):
        load_video(clip, num_frames=4, limits=DecodeLimits(max_packets=3))
    with pytest.raises(MediaError, match="c.mp4: audio longer than the 1 s decode limit"):
        load_audio(clip, limits=DecodeLimits(max_audio_seconds=1.0))
    assert len(load_audio(clip, max_seconds=0.5, limits=DecodeLimits(max_audio_seconds=1.0))) == 8000
    sf.write(tmp_path / "long.wav", sine(500, 16000, 2.0), 16000)
    with pytest.raises(MediaError, match="long.wav: audio longer than the 1 s decode limit"):
        load_audio(tmp_path / "long.wav", limits=DecodeLimits(max_audio_seconds=1.0))


def test_load_media_routes_modalities(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "c.mp4", colour_frames(2), audio=sine(500, 16000, 1.0))
    opts = MediaOptions(num_frames=2, size=16)
    both = load_media(clip, clip, opts)
    assert set(both) == {"audio", "video"} and both["video"].shape == (2, 16, 16, 3)
    assert set(load_media(None, clip, opts)) == {"video"}
    with pytest.raises(ValueError, match="num_frames"):
        MediaOptions(num_frames=0)


# ------------------------------------------------------------------ planned (seek + skip) vs sequential decoding
def reference_frames(path: Path, num_frames: int) -> np.ndarray:
    """The sequential definition, written plainly: count the packets, decode every frame single-threaded, keep
    the uniform ordinals among the decoded frames (the last one past the end), native-resolution RGB."""
    with av.open(str(path)) as container:
        total = sum(1 for packet in container.demux(video=0) if packet.size > 0)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return np.stack([frames[min(i, len(frames) - 1)].to_ndarray(format="rgb24")
                     for i in uniform_indices(total, num_frames)])


def moving_frames(n: int, width: int = 96, height: int = 64) -> list[np.ndarray]:
    """Frames that differ from each other everywhere (a drifting pattern plus a frame counter in the corner)."""
    y, x = np.mgrid[:height, :width]
    out = []
    for k in range(n):
        img = np.stack([(x * 3 + k * 7) % 256, (y * 4 + k * 5) % 256, ((x + y) * 2 + k * 11) % 256], -1)
        img[:8, :8] = (k * 37) % 256
        out.append(img.astype(np.uint8))
    return out


class Spy:
    """Counts the packets sent to decoders and whether the sequential decoder ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.sent, self.sequential = 0, 0
        real_decode, real_sequential = decoding.Budget.decode, video_io.decode_streams

        def decode(budget: Any, packet: Any, codec: Any = None) -> list[Any]:
            self.sent += packet is not None
            return real_decode(budget, packet, codec)

        def sequential(*args: Any, **kwargs: Any) -> None:
            self.sequential += 1
            real_sequential(*args, **kwargs)

        monkeypatch.setattr(decoding.Budget, "decode", decode)
        monkeypatch.setattr(video_io, "decode_streams", sequential)


def write_gop_video(path: Path, n: int = 60) -> Path:
    """H.264, a keyframe every 12 frames, B-frames (reordered, unreferenced)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
        vs.codec_context.options = {"g": "12", "keyint_min": "12", "sc_threshold": "0", "bf": "2",
                                    "b-pyramid": "none", "crf": "18"}
        for img in moving_frames(n):
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_planned_decoding_matches_sequential_reference(tmp_path: Path, ext: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_gop_video(tmp_path / f"gop{ext}")
    spy = Spy(monkeypatch)
    for n in (1, 4, 8, 59, 80):
        np.testing.assert_array_equal(load_video(path, num_frames=n, size=None), reference_frames(path, n))
    assert spy.sequential == 0  # every call took the planned path
    spy.sent = 0
    load_video(path, num_frames=4, size=None)
    assert spy.sent < 40  # of 60 packets: the frames after the last sampled one and between GOPs are not sent


@pytest.mark.parametrize("thread_type,count", [("NONE", 1), ("FRAME", 2), ("SLICE", 2), ("AUTO", 0)])
def test_every_threading_setting_gives_the_reference_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             thread_type: str, count: int) -> None:
    """FFmpeg's frame threads delay output and every seek drains them: the planned decoder still returns exactly
    the sequential reference's frames, on the planned path."""
    path = write_gop_video(tmp_path / "t.mp4")  # 5 GOPs: the sampled frames need seeks
    monkeypatch.setattr(decoding, "VIDEO_THREAD_TYPE", thread_type)
    monkeypatch.setattr(decoding, "VIDEO_THREAD_COUNT", count)
    spy = Spy(monkeypatch)
    for n in (3, 8):
        np.testing.assert_array_equal(load_video(path, num_frames=n, size=None), reference_frames(path, n))
    assert spy.sequential == 0


def test_planned_decoding_falls_back_when_a_seek_lands_elsewhere(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_video(tmp_path / "c.mp4", moving_frames(30), codec="libx264")
    expected = reference_frames(path, 5)
    real_plan = video_io.seek_plan

    def wrong_start(packets: Any, ordinals: list[int]) -> Any:
        plan = real_plan(packets, ordinals)
        plan.start = {p: 3 for p in plan.start}  # not a keyframe: the seek lands on packet 0
        return plan

    monkeypatch.setattr(video_io, "seek_plan", wrong_start)
    spy = Spy(monkeypatch)
    np.testing.assert_array_equal(load_video(path, num_frames=5, size=None), expected)
    assert spy.sequential == 1


REAL_VIDEOS = ["ravdess/Actor_01/*.mp4", "cremad/VideoFlash/*.flv"]


@pytest.mark.parametrize("pattern", REAL_VIDEOS)
def test_planned_decoding_on_real_clips_is_exact(pattern: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every shared RAVDESS MP4 (H.264 1280x720, B-frames, 4 GOPs) and CREMA-D FLV (VP6): the 8 sampled frames
    at native resolution equal the sequential reference's exactly (tolerance 0: same decoder, same frames)."""
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    files = sorted(data.glob(pattern))
    if not files:
        pytest.skip(f"real recordings not found at {data} ({pattern}; ../shared/data)")
    spy = Spy(monkeypatch)
    for path in files:
        np.testing.assert_array_equal(load_video(path, num_frames=8, size=None), reference_frames(path, 8),
                                      err_msg=str(path))
    assert spy.sequential == 0


def test_without_decoders_the_module_imports_and_decoding_names_the_package(tmp_path: Path) -> None:
    """Where PyAV, soundfile and torchaudio are missing (a GPU machine with torch only) the module still imports
    (configs and models need it) and decoding raises ImportError, not MediaError (which would skip every file)."""
    wav = tmp_path / "a.wav"
    sf.write(wav, sine(200, 16000, 0.5), 16000)
    code = ("import sys\n"
            "sys.modules.update(dict.fromkeys(['av', 'soundfile', 'torchaudio']))\n"
            "from contrastive_mer.data.media import MediaError, load_audio, load_video\n"
            "for call in (load_audio, load_video):\n"
            "    try:\n"
            f"        call({str(wav)!r})\n"
            "    except ImportError as err:\n"
            "        print('ImportError:', err)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ImportError: decoding audio/video files needs PyAV: pip install av") == 2


# ----------------------------------------------------------------------------------------------------- face
def test_center_crop_matches_slicing() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    for x in range(0, 200, 10):  # 10-px stripes: area resizing by 2 is exact on them
        img[:, x:x + 10] = (x, 255 - x, (7 * x) % 256)
    np.testing.assert_array_equal(center_crop(img, 50), img[::2, 50:150:2])


def test_fallback_counting_and_square_box() -> None:
    cropper = FaceCropper("haar", margin=0.2)
    flat = np.full((60, 80, 3), 90, np.uint8)
    out = cropper.crop(flat, 24)
    assert out.shape == (24, 24, 3) and (cropper.calls, cropper.fallbacks) == (1, 1)
    assert cropper.fallback_rate == 1.0
    assert square_box((40, 40, 60, 60), 0.5, 200, 100) == (30, 30, 70, 70)  # 20 px face -> 40 px square
    assert square_box((0, 0, 20, 30), 0.2, 200, 100) == (0, 0, 42, 42)  # pushed back inside
    assert square_box((150, 20, 250, 120), 0.2, 200, 100) == (100, 0, 200, 100)  # shrunk to the image


def test_cropper_pickles_with_its_counts() -> None:
    cropper = FaceCropper("haar", margin=0.3)
    cropper.crop(np.full((40, 40, 3), 10, np.uint8), 16)
    clone = pickle.loads(pickle.dumps(cropper))
    assert (clone.backend, clone.margin, clone.calls, clone.fallbacks) == ("haar", 0.3, 1, 1)
    assert clone.crop(np.full((40, 40, 3), 10, np.uint8), 16).shape == (16, 16, 3) and clone.calls == 2


def test_mtcnn_missing_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(ImportError, match="pip install --no-deps facenet-pytorch"):
        FaceCropper("mtcnn")
    with pytest.raises(ValueError, match="unknown face backend"):
        FaceCropper("dlib")
