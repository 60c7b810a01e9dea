"""MOSEI/MOSI, IEMOCAP and manifest adapters on tiny corpora written in the real formats.

Expected values are worked out by hand from the fixtures in ``fixtures_corpora.py``.
"""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.data.datasets import ClipRecord, SampleError, build_adapter
from contrastive_mer.data.datasets.iemocap import IemocapAdapter
from contrastive_mer.data.datasets.manifest import ManifestAdapter
from contrastive_mer.data.datasets.mosei import MoseiAdapter, MosiAdapter, overlapping_frames
from tests.fixtures.corpora import make_iemocap, make_manifest_files, make_mosei, write_csd


# ---------------------------------------------------------------------------------------------- MOSEI / MOSI
@pytest.fixture(scope="module")
def mosei_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mosei")
    return root, make_mosei(root)


def _mosei(root: Path, info: dict, **kw) -> MoseiAdapter:
    files = info["files"]
    return MoseiAdapter(root=root, features={m: files[m] for m in ("audio", "video", "text")},
                        labels=files["labels"], **kw)


def test_mosei_records_labels_groups(mosei_dir):
    root, info = mosei_dir
    ad = _mosei(root, info)
    recs = {r.id: r for r in ad.records()}
    assert list(recs) == ["vidA[0]", "vidA[1]", "vidB[0]", "vidC[0]"]
    assert recs["vidA[0]"].labels == {"sentiment": 1.5, "emotions": [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]}
    assert recs["vidA[1]"].labels == {"sentiment": -2.0, "emotions": [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]}
    assert recs["vidB[0]"].labels["emotions"] == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert recs["vidC[0]"].labels["emotions"] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert ad.label_names == {"emotions": ["happy", "sad", "anger", "surprise", "disgust", "fear"]}
    assert recs["vidB[0]"].groups == {"speaker": "vidB", "video": "vidB"}
    assert set(recs["vidC[0]"].sources) == {"audio", "text"}  # vidC has no FACET features
    assert build_adapter("mosei", root=root, features={"audio": info["files"]["audio"]},
                         labels=info["files"]["labels"]).records()[1].id == "vidA[1]"


def test_mosei_segment_alignment_matches_hand_computation(mosei_dir):
    root, info = mosei_dir
    ad = _mosei(root, info)
    recs = {r.id: r for r in ad.records()}
    audio_a, video_a = info["audio"]["vidA"][0], info["video"]["vidA"][0]
    # audio frames are [0.5 i, 0.5 (i + 1)]; segment [1.2, 3.0] overlaps frames 2..5 ([3.0, 3.5] only touches)
    s = ad.load(recs["vidA[1]"], ["audio", "video", "text"])
    np.testing.assert_array_equal(s.inputs["audio"], audio_a[[2, 3, 4, 5]])
    # video frames [0,.3] [.3,.6] [.6,.9] [.9,1.5] [1.5,2.2] [2.2,3]: segment [1.2, 3.0] -> 3, 4, 5
    np.testing.assert_array_equal(s.inputs["video"], video_a[[3, 4, 5]].astype(np.float32))
    assert s.inputs["audio"].dtype == np.float32 and s.inputs["video"].dtype == np.float32
    assert s.inputs["text"] == "again"
    s0 = ad.load(recs["vidA[0]"], ["audio", "video", "text"])  # [0, 1.2]
    np.testing.assert_array_equal(s0.inputs["audio"], audio_a[[0, 1, 2]])
    np.testing.assert_array_equal(s0.inputs["video"], video_a[[0, 1, 2, 3]])
    assert s0.inputs["text"] == "hello world"  # the 'sp' pause is dropped
    sc = ad.load(recs["vidC[0]"], ["audio", "video"])
    assert set(sc.inputs) == {"audio"}
    pooled = _mosei(root, info, pool="mean").load(recs["vidA[1]"], ["audio"]).inputs["audio"]
    np.testing.assert_allclose(pooled, audio_a[2:6].mean(axis=0))
    assert pooled.shape == (3,)


def test_overlapping_frames_boundaries_and_points():
    inter = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 2.0], [3.0, 3.0], [0.5, 4.0]])
    assert overlapping_frames(inter, 1.0, 3.0).tolist() == [False, True, True, False, True]


def test_mosei_nan_policy(mosei_dir):
    root, info = mosei_dir
    rec = next(r for r in _mosei(root, info).records() if r.id == "vidB[0]")
    with pytest.raises(SampleError, match=r"vidB\[0\].*audio has NaN/Inf in frames \[1\]") as err:
        _mosei(root, info).load(rec, ["audio"])
    assert err.value.path.endswith("CMU_MOSEI_COVAREP.csd")
    got = _mosei(root, info, nan_policy="zero").load(rec, ["audio"]).inputs["audio"]
    expected = info["audio"]["vidB"][0][[1, 2, 3]].copy()  # segment [0.5, 2.0]
    expected[1, 1] = 0.0
    np.testing.assert_array_equal(got, expected)
    assert _mosei(root, info).load(rec, ["video"]).inputs["video"].shape == (4, 2)  # other modalities fine


def test_mosei_folds_and_mosi(mosei_dir, tmp_path):
    root, info = mosei_dir
    assert [r.id for r in _mosei(root, info, split="valid", folds=root / "folds.py").records()] == ["vidB[0]"]
    assert [r.id for r in _mosei(root, info, split="train", folds=root / "folds.json").records()] == \
        ["vidA[0]", "vidA[1]", "vidC[0]"]
    with pytest.raises(ValueError, match="split 'val'|not in folds"):
        _mosei(root, info, split="dev", folds=root / "folds.json")
    mosi_root = tmp_path / "mosi"
    minfo = make_mosei(mosi_root, mosi=True)
    ad = MosiAdapter(root=mosi_root, features={"audio": minfo["files"]["audio"]}, labels=minfo["files"]["labels"])
    assert [r.labels for r in ad.records()] == [{"sentiment": 1.4}, {"sentiment": -2.0}, {"sentiment": 0.6},
                                                {"sentiment": -0.2}]
    assert ad.label_names == {}


def test_mosei_bad_inputs_name_the_file(mosei_dir, tmp_path):
    root, info = mosei_dir
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MoseiAdapter(root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="missing.csd"):
        MoseiAdapter(root=root, features={"audio": "missing.csd"}, labels=info["files"]["labels"])
    (tmp_path / "junk.csd").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.csd"):
        MoseiAdapter(root=root, features={"audio": str(tmp_path / "junk.csd")},
                     labels=info["files"]["labels"]).records()
    write_csd(tmp_path / "badlab.csd", "All Labels", {"v": (np.zeros((1, 3)), np.array([[0.0, 1.0]]))})
    with pytest.raises(ValueError, match="badlab.csd.*7 label columns"):
        MoseiAdapter(root=root, features={"audio": info["files"]["audio"]},
                     labels=str(tmp_path / "badlab.csd")).records()


def test_mosei_adapter_pickles_after_use(mosei_dir):
    root, info = mosei_dir
    ad = _mosei(root, info)
    rec = ad.records()[0]
    ad.load(rec, ["audio"])
    clone = pickle.loads(pickle.dumps(ad))
    np.testing.assert_array_equal(clone.load(rec, ["audio"]).inputs["audio"], info["audio"]["vidA"][0][:3])
    ad.close()


# ---------------------------------------------------------------------------------------------------- IEMOCAP
@pytest.fixture(scope="module")
def iemocap_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("iemocap")
    return root, make_iemocap(root)


def test_iemocap_four_class_map_and_exclusions(iemocap_dir):
    root, _ = iemocap_dir
    ad = IemocapAdapter(root=root, classes=4)
    recs = {r.id: r for r in ad.records()}
    assert {k: r.labels["emotion"] for k, r in recs.items()} == {
        "Ses01F_impro01_F000": 0, "Ses01F_impro01_M000": 1, "Ses01F_impro01_F001": 1,
        "Ses01M_script01_1_F000": 2, "Ses01M_script01_1_M000": 3, "Ses02F_impro02_F000": 3,
        "Ses02F_impro02_M000": 0}
    assert Counter(s.reason for s in ad.skipped) == {f"label {label!r} is not in the 4-class map": 1
                                                     for label in ("xxx", "fru", "oth")}
    xxx = next(s for s in ad.skipped if "'xxx'" in s.reason)
    assert xxx.file.endswith(".txt") and xxx.id is not None and xxx.id in xxx.__str__() and xxx.line is not None
    assert ad.label_names == {"emotion": ["neutral", "happy", "angry", "sad"]}
    r = recs["Ses01F_impro01_M000"]
    assert (r.labels["valence"], r.labels["arousal"], r.labels["dominance"]) == (4.0, 3.5, 3.0)
    assert r.groups == {"speaker": "Ses01_M", "session": "Ses01", "dialogue": "Ses01F_impro01"}
    assert recs["Ses01M_script01_1_F000"].groups["speaker"] == "Ses01_F"


def test_iemocap_six_class_map_and_sessions(iemocap_dir):
    root, _ = iemocap_dir
    ad = build_adapter("iemocap", root=root, classes=6)
    codes = {r.id: r.labels["emotion"] for r in ad.records()}
    assert len(codes) == 8
    assert (codes["Ses01F_impro01_F001"], codes["Ses01F_impro01_F002"], codes["Ses01F_impro01_M000"]) == (4, 5, 1)
    assert sorted(s.reason.split("'")[1] for s in ad.skipped) == ["oth", "xxx"]
    only2 = IemocapAdapter(root=root, speakers=[2]).records()
    assert [r.id for r in only2] == ["Ses02F_impro02_F000", "Ses02F_impro02_M000"]
    assert [r.id for r in IemocapAdapter(root=root, speakers=["ses02_m"]).records()] == ["Ses02F_impro02_M000"]
    assert {r.groups["speaker"] for r in IemocapAdapter(root=root, speakers=["Ses01_F", 2]).records()} == \
        {"Ses01_F", "Ses02_F", "Ses02_M"}
    with pytest.raises(FileNotFoundError, match=r"sessions \[3\]"):
        IemocapAdapter(root=root, speakers=[3]).records()
    with pytest.raises(ValueError, match="bad IEMOCAP speaker 'Ses1F'"):
        IemocapAdapter(root=root, speakers=["Ses1F"])
    with pytest.raises(ValueError, match="classes"):
        IemocapAdapter(root=root, classes=5)


def test_iemocap_transcripts_and_audio(iemocap_dir):
    root, info = iemocap_dir
    ad = IemocapAdapter(root=root, classes=6)
    recs = {r.id: r for r in ad.records()}
    for utt, rec in recs.items():
        assert rec.sources.get("text") == info[utt]["text"], utt
    assert "text" not in recs["Ses01F_impro01_F002"].sources  # no transcript line
    assert "audio" not in recs["Ses02F_impro02_M000"].sources and ad.missing_audio == ["Ses02F_impro02_M000"]
    s = ad.load(recs["Ses01M_script01_1_M000"], ["audio", "text"])
    assert s.inputs["text"] == "I'm sorry."
    np.testing.assert_allclose(s.inputs["audio"], info["Ses01M_script01_1_M000"]["wav"], atol=1e-4)


def test_iemocap_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        IemocapAdapter(root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no Session"):
        IemocapAdapter(root=tmp_path).records()
    bad = tmp_path / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_x.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("% header\n\n[1.0 - 2.0]\tSes01F_x_F000\tneu\n")
    with pytest.raises(ValueError, match=r"Ses01F_x.txt:3"):
        IemocapAdapter(root=tmp_path).records()


# --------------------------------------------------------------------------------------------------- manifest
@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("manifest")
    return root, make_manifest_files(root)


def test_manifest_csv_records_and_bad_rows(manifest_dir, tmp_path, monkeypatch):
    root, _ = manifest_dir
    monkeypatch.chdir(tmp_path)  # relative paths must resolve against the manifest, not the cwd
    ad = ManifestAdapter(path="clips.csv", root=root, labels=["emotion", "arousal"])
    recs = {r.id: r for r in ad.records()}
    assert list(recs) == ["c1", "c2", "c3", "c4"]
    assert [s.line for s in ad.skipped] == [5, 6, 10] and {s.file for s in ad.skipped} == {str(root / "clips.csv")}
    assert "missing id" in ad.skipped[0].reason and "duplicate id 'c1' (first on line 2)" in ad.skipped[1].reason
    assert ad.label_names == {"emotion": ["angry", "happy", "sad"]}
    assert {k: r.labels for k, r in recs.items()} == {
        "c1": {"emotion": 1, "arousal": 0.5}, "c2": {"emotion": 2, "arousal": -0.25},
        "c3": {"emotion": 0, "arousal": 1.0}, "c4": {"emotion": 1, "arousal": 0.75}}
    assert recs["c2"].groups == {"speaker": "spk2"}
    assert recs["c1"].sources["audio"] == str(root / "wav" / "c1.wav")
    assert set(ad.modalities) == {"audio", "text", "au"}


def test_manifest_loads_inputs(manifest_dir):
    root, info = manifest_dir
    ad = ManifestAdapter(path=root / "clips.csv", labels=["emotion"])
    recs = {r.id: r for r in ad.records()}
    s1 = ad.load(recs["c1"], ["audio", "text", "au"])
    assert s1.inputs["text"] == "hello there"
    np.testing.assert_array_equal(s1.inputs["au"], info["feats"]["c1"])
    np.testing.assert_allclose(s1.inputs["audio"], info["wav"], atol=1e-4)
    assert ad.load(recs["c2"], ["text"]).inputs["text"] == "two\nlines"  # inline text wins over transcript
    assert ad.load(recs["c3"], ["text"]).inputs["text"] == "spoken words of c2"
    with pytest.raises(SampleError, match="c3.*c3.npy.*NaN") as err:
        ad.load(recs["c3"], ["au"])
    assert err.value.sample_id == "c3"
    with pytest.raises(SampleError, match="c4.*c4.npy.*unreadable"):
        ad.load(recs["c4"], ["au"])
    (root / "wav" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    broken = ClipRecord("cx", {"audio": str(root / "wav" / "broken.wav")})
    with pytest.raises(SampleError, match="cx.*broken.wav") as err:
        ad.load(broken, ["audio"])
    assert err.value.path.endswith("broken.wav")


def test_manifest_strict_and_class_names(manifest_dir):
    root, _ = manifest_dir
    with pytest.raises(ValueError, match=r"clips.csv:5: missing id"):
        ManifestAdapter(path=root / "clips.csv", strict=True).records()
    ad = ManifestAdapter(path=root / "clips.csv", labels=["emotion"], class_names={"emotion": ["happy", "sad"]})
    records = ad.records()  # a class outside class_names keeps the clip, without the label (issue 22 item 6)
    assert [(r.id, r.labels.get("emotion")) for r in records] == [("c1", 0), ("c2", 1), ("c3", None), ("c4", 0)]
    assert "'angry' (1: c3)" in ad.warnings[-1] and not any("angry" in s.reason for s in ad.skipped)


def test_manifest_jsonl(manifest_dir):
    root, info = manifest_dir
    ad = build_adapter("manifest", root=str(root / "clips.jsonl"), labels=["emotion", "valence"])
    recs = {r.id: r for r in ad.records()}
    assert list(recs) == ["j1", "j2"]
    assert [s.line for s in ad.skipped] == [2, 3, 4, 6]
    assert "JSON" in ad.skipped[0].reason and "missing id" in ad.skipped[2].reason
    assert recs["j1"].labels == {"emotion": [1.0, 0.0, 1.0], "valence": 2.0}
    assert recs["j2"].labels == {"emotion": [0.0, 1.0, 0.0], "valence": -1.5}
    assert ad.label_names == {}
    assert (recs["j1"].groups, recs["j2"].groups) == ({"speaker": "s1"}, {"group": "g7"})
    s = ad.load(recs["j2"], ["text", "au"])
    assert s.inputs == {"text": "spoken words of c2"}
    np.testing.assert_array_equal(ad.load(recs["j1"], ["au"]).inputs["au"], info["feats"]["c1"])
    with pytest.raises(ValueError, match=r"clips.jsonl:2: unparseable JSON"):
        ManifestAdapter(path=root / "clips.jsonl", strict=True).records()
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        ManifestAdapter(path=root / "absent.csv")


# ------------------------------------------------------------------------------- shared options: speakers, modalities
def test_manifest_speakers_and_modalities_options(manifest_dir):
    root, _ = manifest_dir
    ad = ManifestAdapter(path=root / "clips.csv", labels=["emotion"], speakers=["spk2"], modalities=["text", "au"])
    recs = ad.records()
    assert [r.id for r in recs] == ["c2", "c4"] and all(r.groups["speaker"] == "spk2" for r in recs)
    assert all(set(r.sources) <= {"text", "au"} for r in recs) and ad.modalities == ("au", "text")
    s = ad.load(recs[0], ["text", "au"])
    assert s.meta["files"] == {"au": str(root / "feats" / "c2.npy")}  # inline text has no file
    full = ManifestAdapter(path=root / "clips.csv", labels=["emotion"])
    s1 = full.load(full.records()[0], ["audio", "text", "au"])
    assert s1.meta["files"] == {"audio": str(root / "wav" / "c1.wav"), "au": str(root / "feats" / "c1.npy")}


def test_mosei_speakers_and_modalities_options(mosei_dir):
    root, info = mosei_dir
    ad = _mosei(root, info, speakers=["vidA"], modalities=["audio", "text"])
    assert [r.id for r in ad.records()] == ["vidA[0]", "vidA[1]"] and ad.modalities == ("audio", "text")
    assert all(set(r.sources) == {"audio", "text"} for r in ad.records())
    with pytest.raises(ValueError, match=r"no modality \['au'\]"):
        _mosei(root, info, modalities=["au"])


def test_meld_speakers_option(tmp_path):
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode\n"
    (tmp_path / "dev_sent_emo.csv").write_text(
        header + "1,Hi.,Ross,joy,positive,0,0,1,1\n2,Bye.,Rachel,anger,negative,0,1,1,1\n"
                 "3,Hey.,Ross,joy,positive,1,0,1,1\n", encoding="utf-8")
    from contrastive_mer.data.datasets.meld import MeldAdapter

    ad = MeldAdapter(tmp_path, split="dev", speakers=["Ross"])
    assert [r.id for r in ad.records()] == ["dev_dia0_utt0", "dev_dia1_utt0"]
    assert ad.modalities == ("text",)  # MELD lists text unless asked for the clips


def test_manifest_row_with_nul_in_id_or_speaker_is_skipped_not_fatal(tmp_path):
    # HDF5 strings end at NUL, so the store refuses such ids; the scan must skip the row, not stop the run
    (tmp_path / "clips.csv").write_text("id,speaker,text,emotion\nc1,s1,hi,happy\nc\x002,s2,yo,sad\n"
                                        "c3,s\x003,hey,sad\nc4,s4,ho,happy\n", encoding="utf-8")
    ad = ManifestAdapter(path=tmp_path / "clips.csv", labels=["emotion"])
    assert [r.id for r in ad.records()] == ["c1", "c4"]
    assert [(s.line, s.id) for s in ad.skipped] == [(3, "c\\x002"), (4, "c3")]
    assert "NUL byte in column(s) id" in ad.skipped[0].reason and "speaker" in ad.skipped[1].reason
