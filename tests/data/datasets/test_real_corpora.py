"""RAVDESS, CREMA-D and MELD adapters: every file of ``../shared/data`` loads (skipped when it is absent), plus
the error paths on small corpora written here."""

from __future__ import annotations

import csv
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate, resample_poly

from contrastive_mer.data.datasets import SampleError, build_adapter
from contrastive_mer.data.datasets.cremad import CremadAdapter
from contrastive_mer.data.datasets.meld import MeldAdapter
from contrastive_mer.data.datasets.ravdess import EMOTIONS, RavdessAdapter
from contrastive_mer.data.media import load_audio, load_audio_video, load_video
from tests.data.test_media import colour_frames, sine, write_video

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA} (../shared/data)")
RATE = 16000


def _aligned_corr(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Correlation coefficient of ``a`` and ``b`` at the shift (up to ``max_lag`` samples) that best aligns them."""
    xcorr = correlate(a, b, mode="full", method="fft")
    lags = np.arange(-len(b) + 1, len(a))
    window = np.abs(lags) <= max_lag
    lag = int(lags[window][np.argmax(xcorr[window])])
    x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
    n = min(len(x), len(y))
    return float(np.corrcoef(x[:n], y[:n])[0, 1])


# ---------------------------------------------------------------------------------------------------- RAVDESS
@pytest.fixture(scope="module")
def ravdess() -> RavdessAdapter:
    if not DATA.is_dir():
        pytest.skip(f"real recordings not found at {DATA} (../shared/data)")
    return build_adapter("ravdess", root=DATA / "ravdess", num_frames=2, frame_size=32)  # type: ignore[return-value]


@needs_data
def test_ravdess_records_follow_the_file_names(ravdess: RavdessAdapter) -> None:
    files = [p for p in (DATA / "ravdess").glob("Actor_*/*") if p.suffix in (".wav", ".flac", ".mp4")]
    takes = {"03" + p.stem[2:] for p in files}
    records = ravdess.records()
    assert len(records) == len(takes) == 960 and {r.id for r in records} == takes
    for r in records:
        mm, vv, ee, ii, ss, rr, aa = (int(c) for c in r.id.split("-"))
        assert r.labels == {"emotion": ee - 1, "intensity": ii - 1, "statement": ss - 1}
        assert r.groups == {"speaker": f"actor{aa:02d}", "gender": "male" if aa % 2 else "female"}
        assert r.sources["text"] == ("Kids are talking by the door", "Dogs are sitting by the door")[ss - 1]
    assert ravdess.label_names["emotion"][4] == "angry" and len(EMOTIONS) == 8
    with_video = [r for r in records if "video" in r.sources]
    assert len(with_video) == 7 and all(r.id.endswith("-01") for r in with_video)


@needs_data
def test_ravdess_every_audio_and_au_row_loads(ravdess: RavdessAdapter) -> None:
    with open(DATA / "ravdess" / "facial_action_units.csv", newline="") as f:
        rows = {"03" + row["clip_id"][2:]: row for row in csv.DictReader(f)}
    records = ravdess.records()
    kinds = {".flac": 0, ".wav": 0}
    for r in records:
        s = ravdess.load(r, ["audio", "au", "text"])
        audio = s.inputs["audio"]
        assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
        assert 1.5 * RATE < len(audio) < 10 * RATE, r.id
        kinds[Path(r.sources["audio"]).suffix] += 1
        expected = [float(v) for k, v in rows[r.id].items() if re.fullmatch(r"AU\d+_[rc]", k)]
        assert s.inputs["au"].dtype == np.float32 and s.inputs["au"].shape == (35,)
        np.testing.assert_allclose(s.inputs["au"], expected, rtol=1e-6)
        assert set(s.inputs) == {"audio", "au", "text"}
    assert kinds == {".flac": 956, ".wav": 4}


@needs_data
def test_ravdess_original_wavs_become_16k_mono(ravdess: RavdessAdapter) -> None:
    wavs = sorted((DATA / "ravdess").glob("Actor_*/*.wav"))
    channels = []
    for path in wavs:
        raw, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == 48000
        channels.append(raw.shape[1])
        out = load_audio(path)
        ref = resample_poly(raw.mean(axis=1), 1, 3)  # peer: mean of channels, polyphase 48k -> 16k
        assert abs(len(out) - len(ref)) <= 1
        n = min(len(out), len(ref)) - 400
        assert np.corrcoef(out[400:n], ref[400:n])[0, 1] > 0.995
    assert sorted(channels) == [1, 1, 1, 2]


@needs_data
def test_ravdess_mp4_audio_and_frames() -> None:
    mp4s = sorted((DATA / "ravdess").glob("Actor_*/*.mp4"))
    assert len(mp4s) == 7
    for path in mp4s:
        audio, frames = load_audio_video(path, num_frames=3, size=48)
        assert frames.shape == (3, 48, 48, 3) and frames.dtype == np.uint8 and frames.std() > 10
        same_take = next(path.parent.glob("03" + path.stem[2:] + ".*"))
        reference = load_audio(same_take)
        assert abs(len(audio) - len(reference)) < 0.05 * RATE
        # the AV file's AAC track is the same take, shifted by at most ~50 ms
        assert _aligned_corr(audio, reference, int(0.05 * RATE)) > 0.95, path.name


@needs_data
def test_ravdess_face_crop_finds_faces() -> None:
    ad = RavdessAdapter(DATA / "ravdess", modalities=["video"], speakers=["actor01"], crop="face",
                        num_frames=2, frame_size=64)
    centre = RavdessAdapter(DATA / "ravdess", modalities=["video"], speakers=[1], num_frames=2, frame_size=64)
    records = ad.records()
    assert len(records) == 7 and [r.id for r in records] == [r.id for r in centre.records()]
    for r, c in zip(records[::3], centre.records()[::3], strict=True):  # 3 of the 7 clips keep the test short
        face = ad.load(r, ["video"]).inputs["video"]
        assert face.shape == (2, 64, 64, 3)
        assert np.abs(face.astype(int) - centre.load(c, ["video"]).inputs["video"]).mean() > 10
    assert ad.cropper is not None and (ad.cropper.calls, ad.cropper.fallbacks) == (6, 0)


@needs_data
def test_mtcnn_backend_on_ravdess_frames() -> None:
    pytest.importorskip("facenet_pytorch", reason="optional MTCNN backend not installed")
    from contrastive_mer.data.face import FaceCropper

    frames = load_video(sorted((DATA / "ravdess").glob("Actor_01/*.mp4"))[0], num_frames=2, size=None)
    mtcnn, haar = FaceCropper("mtcnn"), FaceCropper("haar")
    for frame in frames[:, ::2, ::2]:
        m, h = mtcnn.detect(np.ascontiguousarray(frame)), haar.detect(np.ascontiguousarray(frame))
        assert m is not None and h is not None
        overlap = max(0, min(m[2], h[2]) - max(m[0], h[0])) * max(0, min(m[3], h[3]) - max(m[1], h[1]))
        assert overlap > 0.5 * (m[2] - m[0]) * (m[3] - m[1])  # both find the same face


@needs_data
def test_ravdess_options() -> None:
    ad = RavdessAdapter(DATA / "ravdess", modalities=["au"], speakers=[1, "actor02"])
    records = ad.records()
    assert len(records) == 120 and {r.groups["speaker"] for r in records} == {"actor01", "actor02"}
    assert all(set(r.sources) == {"au"} for r in records)
    sample = ad.load(records[0], ["audio", "au"])  # audio not listed: absent, not an error
    assert set(sample.inputs) == {"au"}


def test_ravdess_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="RAVDESS root not found: .*nowhere"):
        RavdessAdapter(tmp_path / "nowhere")
    actor = tmp_path / "Actor_03"
    actor.mkdir()
    sf.write(actor / "03-01-05-01-01-01-03.flac", sine(220, RATE, 1.0), RATE)
    sf.write(actor / "03-01-09-01-01-01-03.flac", sine(220, RATE, 1.0), RATE)
    (actor / "03-01-04-01-01-01-03.wav").write_bytes(b"RIFF" + bytes(100))
    ad = RavdessAdapter(tmp_path, modalities=["audio", "text"])
    by_id = {r.id: r for r in ad.records()}
    assert sorted(by_id) == ["03-01-04-01-01-01-03", "03-01-05-01-01-01-03", "03-01-09-01-01-01-03"]
    assert ad.load(by_id["03-01-05-01-01-01-03"], ["audio"]).inputs["audio"].shape == (RATE,)
    with pytest.raises(SampleError, match=r"03-01-09-01-01-01-03.*unknown label code emotion=09") as info:
        ad.load(by_id["03-01-09-01-01-01-03"], ["audio"])
    assert info.value.path == str(actor / "03-01-09-01-01-01-03.flac")
    with pytest.raises(SampleError, match=r"'03-01-04-01-01-01-03' \(.*03-01-04-01-01-01-03.wav\): audio: ") as info:
        ad.load(by_id["03-01-04-01-01-01-03"], ["audio"])
    assert info.value.sample_id == "03-01-04-01-01-01-03"
    with pytest.raises(ValueError, match="no modality"):
        RavdessAdapter(tmp_path, modalities=["audio", "thermal"])
    with pytest.raises(ValueError, match="'landmarks' needs data.options.landmarks_dir"):
        RavdessAdapter(tmp_path, modalities=["landmarks"])
    face = pickle.loads(pickle.dumps(RavdessAdapter(tmp_path, crop="face")))  # DataLoader workers may pickle it
    assert face.cropper is not None and len(face.records()) == 3


# ---------------------------------------------------------------------------------------------------- CREMA-D
@needs_data
def test_cremad_every_clip_loads() -> None:
    ad = build_adapter("cremad", root=DATA / "cremad", num_frames=2, frame_size=32)
    records = ad.records()
    flv = sorted(p.stem for p in (DATA / "cremad" / "VideoFlash").glob("*.flv"))
    mp3 = sorted(p.stem for p in (DATA / "cremad" / "AudioMP3").glob("*.mp3"))
    assert [r.id for r in records] == sorted(flv + mp3) and len(records) == 12
    emotions = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    for r in records:
        speaker, sentence, emotion, level = r.id.split("_")
        assert r.labels["emotion"] == emotions.index(emotion) and r.labels["level"] == 3
        assert r.groups == {"speaker": speaker} and sentence == "DFA"
        s = ad.load(r, ["audio", "video", "text"])
        assert s.inputs["text"] == "Don't forget a jacket"
        audio = s.inputs["audio"]
        assert audio.dtype == np.float32 and np.isfinite(audio).all() and 1.5 * RATE < len(audio) < 5 * RATE
        if r.id in flv:
            assert s.inputs["video"].shape == (2, 32, 32, 3) and s.meta["files"]["audio"].endswith(".flv")
        else:
            assert "video" not in s.inputs and s.meta["files"]["audio"].endswith(".mp3")
    assert ad.label_names["emotion"] == ["anger", "disgust", "fear", "happy", "neutral", "sad"]
    only = CremadAdapter(DATA / "cremad", speakers=[1002], modalities=["audio"])
    assert [r.id for r in only.records()] == mp3


def test_cremad_names_and_sources(tmp_path: Path) -> None:
    (tmp_path / "AudioWAV").mkdir()
    (tmp_path / "VideoFlash").mkdir()
    sf.write(tmp_path / "AudioWAV" / "1091_TIE_HAP_HI.wav", sine(300, RATE, 1.0), RATE)
    sf.write(tmp_path / "AudioWAV" / "1091_TIE_XYZ_HI.wav", sine(300, RATE, 1.0), RATE)
    write_video(tmp_path / "VideoFlash" / "1091_TIE_HAP_HI.flv", colour_frames(2), codec="flv",
                audio=sine(900, 22050, 1.0), audio_rate=22050, audio_codec="libmp3lame")
    ad = CremadAdapter(tmp_path)
    good, bad = ad.records()
    assert good.id == "1091_TIE_HAP_HI" and good.sources["audio"].endswith(".wav")  # WAV preferred
    assert good.sources["text"] == "That is exactly what happened"
    assert good.labels == {"emotion": 3, "level": 2, "sentence": 1}
    with pytest.raises(SampleError, match="unknown label code emotion='XYZ'"):
        ad.load(bad, ["audio"])
    flv_first = CremadAdapter(tmp_path, audio_sources=["flv", "wav"], num_frames=1, frame_size=16)
    sample = flv_first.load(flv_first.records()[0], ["audio", "video"])
    assert sample.meta["files"]["audio"].endswith(".flv") and sample.inputs["video"].shape == (1, 16, 16, 3)
    with pytest.raises(FileNotFoundError, match="CREMA-D root not found"):
        CremadAdapter(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------------- MELD
@needs_data
def test_meld_every_row_text_and_missing_clips() -> None:
    ad = build_adapter("meld", root=DATA / "meld", modalities=["audio", "video", "text"])
    records = ad.records()
    expected = []
    for split in ("train", "dev", "test"):
        with open(DATA / "meld" / f"{split}_sent_emo.csv", newline="", encoding="utf-8") as f:
            expected += [(split, row) for row in csv.DictReader(f)]
    assert len(records) == len(expected) == 13708
    emotions = ad.label_names["emotion"]
    for r, (split, row) in zip(records, expected, strict=True):
        assert r.id == f"{split}_dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
        assert emotions[r.labels["emotion"]] == row["Emotion"]
        assert ad.label_names["sentiment"][r.labels["sentiment"]] == row["Sentiment"]
        assert r.groups == {"speaker": row["Speaker"], "dialogue": f"{split}_dia{row['Dialogue_ID']}",
                            "split": split}
        assert ad.load(r, ["text"]).inputs == {"text": " ".join(row["Utterance"].split())}
    assert len({r.id for r in records}) == 13708
    first = records[0]
    clip = DATA / "meld" / "train_splits" / "dia0_utt0.mp4"
    with pytest.raises(SampleError, match=f"{re.escape(str(clip))}.*file not found"):
        ad.load(first, ["audio", "text"])
    assert len(MeldAdapter(DATA / "meld", split="dev").records()) == 1109


def test_meld_clip_decoding_and_bad_rows(tmp_path: Path) -> None:
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode\n"
    (tmp_path / "dev_sent_emo.csv").write_text(
        header + '1,"Hi,  there.",Ross,joy,positive,0,0,1,1\n2,Bye.,Rachel,anger,negative,0,1,1,1\n'
                 '3,What?,Joey,confused,neutral,0,2,1,1\n', encoding="utf-8")
    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(clips / "dia0_utt0.mp4", colour_frames(2), audio=sine(400, RATE, 1.0))
    ad = MeldAdapter(tmp_path, split="dev", clips_dir="clips", modalities=["audio", "video", "text"],
                     num_frames=2, frame_size=16)
    present, absent, bad = ad.records()
    sample = ad.load(present, ["audio", "video", "text"])
    assert sample.inputs["text"] == "Hi, there." and sample.inputs["video"].shape == (2, 16, 16, 3)
    assert abs(len(sample.inputs["audio"]) - RATE) < 0.1 * RATE
    with pytest.raises(SampleError, match="dev_dia0_utt1.*dia0_utt1.mp4.*file not found"):
        ad.load(absent, ["video"])
    assert ad.load(absent, ["text"]).inputs == {"text": "Bye."}
    with pytest.raises(SampleError, match="line 4: unknown label code emotion='confused'"):
        ad.load(bad, ["text"])
    with pytest.raises(FileNotFoundError, match="MELD table not found: .*train_sent_emo.csv"):
        MeldAdapter(tmp_path, split="train")
    with pytest.raises(ValueError, match="unknown MELD split"):
        MeldAdapter(tmp_path, split="validation")


def test_normalise_per_actor_matches_a_numpy_reference() -> None:
    from contrastive_mer.data.datasets.ravdess import normalise_per_actor

    rng = np.random.default_rng(0)
    table: dict = {}
    for actor, offset in ((1, 0.0), (2, 3.0)):
        for k in range(5):
            table[f"03-01-0{k + 1}-01-01-01-{actor:02d}"] = (offset + rng.normal(size=4)).astype(np.float32)
    table["03-01-01-01-01-01-01"][2] = 7.0  # an outlier
    for key in [k for k in table if k.endswith("-02")]:
        table[key][3] = 1.5                   # a column constant within actor 2
    table["03-01-06-01-01-01-02"] = "bad row"  # error entries pass through untouched
    out = normalise_per_actor(table)
    assert out["03-01-06-01-01-01-02"] == "bad row"
    for actor in ("01", "02"):
        keys = sorted(k for k in table if k.endswith(actor) and not isinstance(table[k], str))
        block = np.stack([table[k] for k in keys]).astype(np.float64)
        std = block.std(axis=0)
        expected = np.where(std > 1e-6, (block - block.mean(0)) / np.where(std > 1e-6, std, 1), 0.0)
        np.testing.assert_allclose(np.stack([out[k] for k in keys]), expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.stack([out[k] for k in table if k.endswith("-02") and k[6:8] != "06"])[:, 3] == 0)


@needs_data
def test_ravdess_au_normalised_per_actor_has_zero_mean_per_actor() -> None:
    adapter = RavdessAdapter(DATA / "ravdess", modalities=("au",), au_normalize="actor", speakers=[1, 2, 3])
    rows: dict[str, list[np.ndarray]] = {}
    for record in adapter.records():
        if "au" in record.sources:
            rows.setdefault(record.groups["speaker"], []).append(adapter.load(record, ["au"]).inputs["au"])
    assert sorted(rows) == ["actor01", "actor02", "actor03"]
    for values in rows.values():
        block = np.stack(values)
        np.testing.assert_allclose(block.mean(0), 0.0, atol=1e-5)
        assert np.all((np.abs(block.std(0) - 1) < 1e-4) | (block.std(0) < 1e-6))
    with pytest.raises(ValueError, match="au_normalize"):
        RavdessAdapter(DATA / "ravdess", modalities=("au",), au_normalize="global")
