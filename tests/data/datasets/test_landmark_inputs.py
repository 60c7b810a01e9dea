"""The ``landmarks`` modality: synthetic landmarks that follow the drawn face, OpenFace CSVs through the RAVDESS and
manifest adapters (``landmarks_dir``), and landmark columns of a MOSEI-layout ``.csd`` (fixtures, no real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from contrastive_mer.data.datasets import SampleError
from contrastive_mer.data.datasets.manifest import ManifestAdapter
from contrastive_mer.data.datasets.mosei import MoseiAdapter
from contrastive_mer.data.datasets.ravdess import RavdessAdapter
from contrastive_mer.data.datasets.synthetic import SyntheticCorpus
from tests.data.test_landmarks import face_track, write_openface_csv
from tests.fixtures.corpora import write_csd


def reference_frames(xy: np.ndarray) -> np.ndarray:
    """numpy reference: min-max per axis over the clip (all 68 points), jaw dropped, node-major flattening."""
    norm = (xy - xy.min(axis=(0, 1))) / (xy.max(axis=(0, 1)) - xy.min(axis=(0, 1)))
    return norm[:, 17:].reshape(len(xy), -1)


# ------------------------------------------------------------------------------------------------- synthetic
def test_synthetic_landmarks_shape_determinism_and_defaults_unchanged():
    corpus = SyntheticCorpus(num_speakers=2, clips_per_speaker_emotion=1, landmark_frames=12,
                             modalities=("video", "landmarks"), missing_fraction=0.0)
    rec = corpus.records()[3]
    a = corpus.load(rec, ["landmarks"]).inputs["landmarks"]
    assert a.shape == (12, 102) and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, corpus.load(rec, ["landmarks", "video"]).inputs["landmarks"])
    # the default corpus (what the demo uses) does not list landmarks, so its content is unchanged
    assert "landmarks" not in SyntheticCorpus().modalities and "landmarks" in SyntheticCorpus.modalities


def test_synthetic_landmarks_follow_the_expression():
    """Smiling (happy, valence +0.9) lifts the mouth corners above the upper-lip middle; sad lowers them."""
    corpus = SyntheticCorpus(num_speakers=6, clips_per_speaker_emotion=4, modalities=("landmarks",),
                             missing_fraction=0.0)
    lift: dict[int, list[float]] = {1: [], 2: []}  # happy, sad
    for rec in corpus.records():
        emotion = rec.labels["emotion"]
        if emotion in lift:
            pts = corpus.load(rec, ["landmarks"]).inputs["landmarks"].reshape(-1, 51, 2)[-5:]  # apex frames
            corners = (pts[:, 48 - 17, 1] + pts[:, 54 - 17, 1]) / 2  # y grows downwards
            lift[emotion].append(float((pts[:, 51 - 17, 1] - corners).mean()))
    assert np.mean(lift[1]) > 0.0 > np.mean(lift[2])


def test_synthetic_landmark_emotion_recoverable_on_unseen_speakers():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    corpus = SyntheticCorpus(num_speakers=10, clips_per_speaker_emotion=5, modalities=("landmarks",),
                             missing_fraction=0.0, landmark_frames=16)
    feats, labels, train = [], [], []
    for rec in corpus.records():
        frames = corpus.load(rec, ["landmarks"]).inputs["landmarks"]
        feats.append(np.concatenate([frames.mean(0), frames.std(0)]))
        labels.append(rec.labels["emotion"])
        train.append(rec.groups["speaker"] < "s07")
    x, y, tr = np.array(feats), np.array(labels), np.array(train)
    scaler = StandardScaler().fit(x[tr])
    acc = LogisticRegression(max_iter=3000).fit(scaler.transform(x[tr]), y[tr]).score(scaler.transform(x[~tr]),
                                                                                     y[~tr])
    assert acc > 0.35  # 6 classes: chance 0.17


# ---------------------------------------------------------------------------------------------------- RAVDESS
@pytest.fixture()
def ravdess_root(tmp_path: Path) -> Path:
    actor = tmp_path / "Actor_01"
    actor.mkdir()
    for emotion in ("03", "04"):
        sf.write(actor / f"03-01-{emotion}-01-01-01-01.wav", 0.1 * np.sin(np.arange(1600) / 5.0), 16000)
    lms = tmp_path / "openface" / "Actor_01"
    lms.mkdir(parents=True)
    write_openface_csv(lms / "01-01-03-01-01-01-01.csv", face_track(6, seed=3))  # named after the MP4
    (lms / "01-01-04-01-01-01-01.csv").write_text("frame, success\n1, 1\n")  # no landmark columns
    (lms / "notes.csv").write_text("x\n")
    return tmp_path


def test_ravdess_landmarks_dir_matches_takes_and_reads_like_numpy(ravdess_root):
    ad = RavdessAdapter(ravdess_root, landmarks_dir="openface", au_file=None)
    recs = {r.id: r for r in ad.records()}
    good, bad = recs["03-01-03-01-01-01-01"], recs["03-01-04-01-01-01-01"]
    assert good.sources["landmarks"].endswith("01-01-03-01-01-01-01.csv") and "audio" in good.sources
    sample = ad.load(good, ["audio", "landmarks"])
    expected = reference_frames(face_track(6, seed=3))
    np.testing.assert_allclose(sample.inputs["landmarks"], expected, rtol=1e-5, atol=1e-6)
    assert sample.meta["files"]["landmarks"] == good.sources["landmarks"]
    with pytest.raises(SampleError, match="x_0") as err:  # a bad CSV is a skip naming the clip and the file
        ad.load(bad, ["landmarks"])
    assert err.value.path.endswith("01-01-04-01-01-01-01.csv")
    assert any("notes.csv" in s.file for s in ad.skipped)


def test_ravdess_without_landmarks_dir_has_no_landmarks_and_missing_dir_fails(ravdess_root):
    ad = RavdessAdapter(ravdess_root, au_file=None)
    assert all("landmarks" not in r.sources for r in ad.records())
    with pytest.raises(FileNotFoundError, match="landmarks_dir"):
        RavdessAdapter(ravdess_root, landmarks_dir="nowhere", au_file=None)


# --------------------------------------------------------------------------------------------------- manifest
def test_manifest_landmarks_dir_by_id_or_video_stem(tmp_path):
    lms = tmp_path / "lm"
    lms.mkdir()
    write_openface_csv(lms / "c1.csv", face_track(4, seed=5))  # by id
    write_openface_csv(lms / "take_b.csv", face_track(7, seed=6))  # by the video's stem
    (tmp_path / "clips.csv").write_text("id,video,text,emotion\nc1,,hello,a\nc2,vids/take_b.mp4,hi,b\n"
                                        "c3,,hey,a\n")
    ad = ManifestAdapter(path=tmp_path / "clips.csv", labels=["emotion"], landmarks_dir="lm")
    recs = {r.id: r for r in ad.records()}
    assert "landmarks" in ad.modalities and "landmarks" not in recs["c3"].sources
    np.testing.assert_allclose(ad.load(recs["c1"], ["landmarks"]).inputs["landmarks"],
                               reference_frames(face_track(4, seed=5)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ad.load(recs["c2"], ["landmarks"]).inputs["landmarks"],
                               reference_frames(face_track(7, seed=6)), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------------ MOSEI
def test_mosei_landmarks_from_openface_csd_columns(tmp_path):
    rng = np.random.default_rng(0)
    tracks = {"vidA": face_track(10, seed=7)}
    feats = rng.normal(size=(10, 713))
    feats[:, 299:367], feats[:, 367:435] = tracks["vidA"][..., 0], tracks["vidA"][..., 1]
    intervals = np.stack([np.arange(10) * 0.1, np.arange(1, 11) * 0.1], 1)
    write_csd(tmp_path / "of2.csd", "OpenFace_2", {"vidA": (feats, intervals)})
    write_csd(tmp_path / "labels.csd", "All Labels",
              {"vidA": (np.array([[1.0, 1, 0, 0, 0, 0, 0], [0.0, 0, 1, 0, 0, 0, 0]]),
                        np.array([[0.0, 0.5], [0.5, 1.0]]))})
    ad = MoseiAdapter(root=tmp_path, features={"landmarks": "of2.csd"}, labels="labels.csd")
    first, second = ad.records()
    out = ad.load(second, ["landmarks"]).inputs["landmarks"]
    np.testing.assert_allclose(out, reference_frames(tracks["vidA"][5:]), rtol=1e-5, atol=1e-6)  # per segment
    shifted = MoseiAdapter(root=tmp_path, features={"landmarks": "of2.csd"}, labels="labels.csd",
                           landmarks_x_column=600)
    with pytest.raises(SampleError, match="landmarks_x_column=600"):
        shifted.load(shifted.records()[0], ["landmarks"])
