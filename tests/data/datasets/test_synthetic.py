"""Tests of the embedded synthetic corpus: contract, determinism, formats, missing modalities, and that each
modality carries the emotion imperfectly while fusing them helps (checked with hand features + sklearn)."""

from __future__ import annotations

import pickle
import re
import time

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from contrastive_mer.data.datasets import SampleError, adapter_names, build_adapter
from contrastive_mer.data.datasets.base import ClipRecord
from contrastive_mer.data.datasets.synthetic import EMOTION_NAMES, SyntheticConfig, SyntheticCorpus, split_speakers
from contrastive_mer.data.datasets.synthetic_text import EMOTION_WORDS

ALL = ("video", "audio", "text")
SMALL = dict(num_speakers=3, num_emotions=4, clips_per_speaker_emotion=2, num_frames=4, frame_size=32,
             sample_rate=8000, min_seconds=0.5, max_seconds=0.8)


def _by_id(corpus: SyntheticCorpus) -> dict[str, ClipRecord]:
    return {r.id: r for r in corpus.records()}


# ----- contract -------------------------------------------------------------------------------------------------
def test_records_ids_labels_groups_and_balance():
    corpus = SyntheticCorpus()
    recs = corpus.records()
    assert len(recs) == len(corpus) == 12 * 6 * 8
    assert len({r.id for r in recs}) == len(recs)
    assert all(re.fullmatch(r"syn-s\d\d-e\d-c\d\d", r.id) for r in recs)
    assert corpus.label_names["emotion"] == ["neutral", "happy", "sad", "angry", "fearful", "surprised"]
    r = next(r for r in recs if r.id == "syn-s03-e2-c05")
    assert r.labels == {"emotion": 2} and r.groups == {"speaker": "s03"}
    labels = np.array([r.labels["emotion"] for r in recs])
    assert np.bincount(labels).tolist() == [12 * 8] * 6
    per_speaker = {}
    for rec in recs:
        per_speaker.setdefault(rec.groups["speaker"], []).append(rec.labels["emotion"])
    assert sorted(per_speaker) == [f"s{i:02d}" for i in range(12)]
    assert all(np.bincount(v).tolist() == [8] * 6 for v in per_speaker.values())


def test_registry_and_config_forms():
    assert "synthetic" in adapter_names()
    a = build_adapter("synthetic", **SMALL, seed=3)
    b = SyntheticCorpus(SyntheticConfig(**SMALL, seed=3))
    c = SyntheticCorpus(dict(SMALL, seed=3))
    assert isinstance(a, SyntheticCorpus)
    assert [r.id for r in a.records()] == [r.id for r in b.records()] == [r.id for r in c.records()]
    ra = a.records()[5]
    np.testing.assert_array_equal(a.load(ra, ALL).inputs.get("audio"), b.load(ra, ALL).inputs.get("audio"))


@pytest.mark.parametrize("kwargs, key", [
    (dict(num_emotions=9), "num_emotions"), (dict(num_emotions=1), "num_emotions"),
    (dict(speakers=[0, 12]), "speakers"), (dict(speakers=[1, 1]), "speakers"),
    (dict(modalities=("video", "smell")), "modalities"), (dict(min_seconds=2.0, max_seconds=1.0), "max_seconds"),
    (dict(missing_fraction=1.5), "missing_fraction"), (dict(noise=-1.0), "noise"),
    (dict(frame_size=8), "frame_size"), (dict(colour="red"), "colour"),
])
def test_bad_config_names_the_field(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SyntheticCorpus(**kwargs)


def test_foreign_record_raises_sample_error():
    corpus = SyntheticCorpus(**SMALL)
    good = corpus.records()[0]
    for bad in (ClipRecord("syn-s00-e0-c01", dict(good.sources), good.labels, good.groups),  # id/index mismatch
                ClipRecord("x", {"audio": "/tmp/a.wav"}), ClipRecord("y", {"audio": 10 ** 6}),
                ClipRecord("z", {"audio": np.zeros(3)}), ClipRecord("w", {})):
        with pytest.raises(SampleError, match=re.escape(repr(bad.id))):
            corpus.load(bad, ALL)


# ----- determinism ----------------------------------------------------------------------------------------------
def _assert_same(s1, s2):
    assert s1.inputs.keys() == s2.inputs.keys()
    for m in s1.inputs:
        if m == "text":
            assert s1.inputs[m] == s2.inputs[m]
        else:
            np.testing.assert_array_equal(s1.inputs[m], s2.inputs[m])


def test_same_seed_identical_across_instances_order_and_subsets():
    a, b = SyntheticCorpus(**SMALL, seed=7), SyntheticCorpus(**SMALL, seed=7)
    recs = a.records()
    picks = [recs[i] for i in (0, 5, 11, len(recs) - 1)]
    first = [a.load(r, ALL) for r in picks]
    second = [b.load(r, ALL) for r in reversed(picks)][::-1]  # other instance, other order
    for rec, s1, s2 in zip(picks, first, second):
        _assert_same(s1, s2)
        for m in s1.inputs:  # one modality alone equals the same modality of a full load
            alone = b.load(rec, [m]).inputs
            assert list(alone) == [m]
            np.testing.assert_array_equal(np.asarray(alone[m]), np.asarray(s1.inputs[m]))
    # listing a subset of speakers or changing the missing fraction does not change clip content
    sub = SyntheticCorpus(**SMALL, seed=7, speakers=[2], missing_fraction=0.0)
    assert {r.groups["speaker"] for r in sub.records()} == {"s02"}
    rec = sub.records()[3]
    full = a.load(_by_id(a)[rec.id], ALL)
    only = sub.load(rec, ALL)
    for m in full.inputs:
        np.testing.assert_array_equal(np.asarray(full.inputs[m]), np.asarray(only.inputs[m]))


def test_pickled_corpus_generates_the_same_clips():
    """DataLoader workers receive a pickled copy of the adapter."""
    corpus = SyntheticCorpus(**SMALL, seed=2)
    rec = corpus.records()[1]
    before = corpus.load(rec, ALL)
    _assert_same(pickle.loads(pickle.dumps(corpus)).load(rec, ALL), before)


def test_different_seed_differs():
    a, b = SyntheticCorpus(**SMALL, seed=0, missing_fraction=0.0), SyntheticCorpus(**SMALL, seed=1,
                                                                                   missing_fraction=0.0)
    ra, rb = a.records()[4], b.records()[4]
    assert ra.id == rb.id
    sa, sb = a.load(ra, ALL), b.load(rb, ALL)
    assert not np.array_equal(sa.inputs["video"], sb.inputs["video"])
    assert sa.inputs["audio"].shape != sb.inputs["audio"].shape or not np.array_equal(sa.inputs["audio"],
                                                                                      sb.inputs["audio"])
    texts_a = [a.load(r, ["text"]).inputs["text"] for r in a.records()]
    texts_b = [b.load(r, ["text"]).inputs["text"] for r in b.records()]
    assert texts_a != texts_b


# ----- formats --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [{}, SMALL])
def test_shapes_dtypes_ranges(cfg):
    corpus = SyntheticCorpus(**cfg, missing_fraction=0.0)
    c = corpus.config
    for rec in corpus.records()[::7][:6]:
        s = corpus.load(rec, ALL)
        assert s.id == rec.id and s.labels == rec.labels and s.groups == rec.groups
        v, a, t = s.inputs["video"], s.inputs["audio"], s.inputs["text"]
        assert v.dtype == np.uint8 and v.shape == (c.num_frames, c.frame_size, c.frame_size, 3)
        assert v.std() > 10 and v.min() < 80 and v.max() > 150  # a drawn face, not a flat image
        assert a.dtype == np.float32 and a.ndim == 1
        assert c.min_seconds * c.sample_rate - 1 <= len(a) <= c.max_seconds * c.sample_rate + 1
        assert np.isfinite(a).all() and np.abs(a).max() <= 1.0 and 0.005 < np.sqrt(np.mean(a ** 2)) < 0.5
        assert isinstance(t, str) and len(t.split()) >= 4 and t[0].isupper() and t[-1] in ".!"
        assert np.asarray(s.meta["state"]).shape == (3,)


def test_modality_selection():
    corpus = SyntheticCorpus(**SMALL, modalities=("audio", "text"), missing_fraction=0.0)
    rec = corpus.records()[0]
    assert set(rec.sources) == {"audio", "text"}
    assert set(corpus.load(rec, ["video", "audio"]).inputs) == {"audio"}


def test_audio_is_voiced_with_pitch_in_speech_range():
    corpus = SyntheticCorpus(missing_fraction=0.0)
    a = corpus.load(corpus.records()[0], ["audio"]).inputs["audio"].astype(np.float64)
    sr = corpus.config.sample_rate
    spec = np.abs(np.fft.rfft(a * np.hanning(len(a)))) ** 2
    freqs = np.fft.rfftfreq(len(a), 1 / sr)
    low = spec[(freqs > 60) & (freqs < 4000)].sum()
    assert low / spec.sum() > 0.8  # speech-like: energy below 4 kHz, not white noise


# ----- missing modalities ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.4])
def test_missing_fraction_and_never_all_missing(fraction):
    corpus = SyntheticCorpus(missing_fraction=fraction, seed=5)
    recs = corpus.records()
    counts = np.array([len(r.sources) for r in recs])
    assert counts.min() >= 2 and counts.max() == 3
    measured = np.mean(counts < 3)
    assert abs(measured - fraction) < 0.05, measured
    dropped = [m for r in recs for m in ALL if m not in r.sources]
    if fraction > 0:
        assert set(dropped) == set(ALL)  # every modality can be the missing one
    rec = next((r for r in recs if len(r.sources) < 3), None)
    if rec is not None:
        assert set(corpus.load(rec, ALL).inputs) == set(rec.sources)


def test_single_modality_corpus_never_misses():
    corpus = SyntheticCorpus(**SMALL, modalities=("audio",), missing_fraction=1.0)
    assert all(set(r.sources) == {"audio"} for r in corpus.records())


# ----- text -----------------------------------------------------------------------------------------------------
def _emotion_words(names):
    return {w: names.index(k) for k, words in EMOTION_WORDS.items() if k in names for w in words}


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.8])
def test_text_emotion_word_fraction(fraction):
    corpus = SyntheticCorpus(missing_fraction=0.0, text_emotion_word_fraction=fraction, text_confusion=0.1)
    names = corpus.label_names["emotion"]
    lookup = _emotion_words(list(EMOTION_NAMES))
    hits, right = 0, 0
    recs = corpus.records()
    texts = [corpus.load(r, ["text"]).inputs["text"].lower() for r in recs]
    for r, text in zip(recs, texts):
        words = re.findall(r"[a-z-]+", text)
        found = [lookup[w] for w in words if w in lookup]
        hits += bool(found)
        right += bool(found) and found[0] == r.labels["emotion"]
    assert abs(hits / len(recs) - fraction) < 0.06
    if hits:
        assert 0.8 < right / hits < 0.97  # mostly the clip's emotion, sometimes a neighbouring one
        assert {k for w, k in lookup.items() if w in " ".join(texts)} <= set(range(len(names)))


# ----- emotion signal: per modality imperfect, fusion better ---------------------------------------------------
def video_features(v: np.ndarray, k: int = 16) -> np.ndarray:
    """Grey mean frame, block-averaged to ``k x k``."""
    g = v.astype(np.float32).mean(axis=(0, 3))
    b = g.shape[0] // k
    return g.reshape(k, b, k, b).mean(axis=(1, 3)).ravel()


def audio_features(a: np.ndarray) -> np.ndarray:
    """Log-power spectrum averaged in 24 log-spaced bands, plus zero-crossing rate."""
    n = 512
    frames = a[: len(a) // n * n].reshape(-1, n) * np.hanning(n)
    logp = np.log((np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(0) + 1e-10)
    edges = np.unique(np.geomspace(2, len(logp), 25).astype(int))
    bands = [logp[lo:hi].mean() for lo, hi in zip(edges[:-1], edges[1:])]
    return np.array(bands + [np.mean(np.abs(np.diff(np.sign(a))) > 0)])


def per_speaker_standardise(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    for s in np.unique(speakers):
        m = speakers == s
        out[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-6)
    return out


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def features(request):
    corpus = SyntheticCorpus(seed=request.param, missing_fraction=0.0)
    samples = [corpus.load(r, ALL) for r in corpus.records()]
    y = np.array([s.labels["emotion"] for s in samples])
    spk = np.array([int(s.groups["speaker"][1:]) for s in samples])
    train = spk < 8
    texts = [s.inputs["text"] for s in samples]
    bow = CountVectorizer(binary=True).fit([t for t, tr in zip(texts, train) if tr])
    feats = {"video": per_speaker_standardise(np.stack([video_features(s.inputs["video"]) for s in samples]), spk),
             "audio": per_speaker_standardise(np.stack([audio_features(s.inputs["audio"]) for s in samples]), spk),
             "text": bow.transform(texts).toarray().astype(np.float64)}
    states = np.stack([s.meta["state"] for s in samples])
    return request.param, feats, y, train, states


def _probe(x, y, train) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000)).fit(x[train], y[train])
    return float(clf.score(x[~train], y[~train]))


def test_each_modality_carries_emotion_imperfectly_and_fusion_helps(features):
    seed, feats, y, train, _ = features
    chance = 1 / 6
    acc = {m: _probe(x, y, train) for m, x in feats.items()}
    acc["fused"] = _probe(np.hstack([feats[m] for m in ALL]), y, train)
    print(f"\nseed {seed} held-out-speaker accuracy:", {k: round(v, 3) for k, v in acc.items()})
    for m in ("video", "audio"):
        assert chance + 0.15 < acc[m] < 0.95, (m, acc[m])
    assert chance + 0.08 < acc["text"] < 0.95
    best = max(acc[m] for m in ALL)
    assert acc["fused"] > best + 0.03, acc


def test_modalities_share_the_clip_level_state(features):
    """Beyond the class, video and audio agree on the clip's latent deviation from its class mean: their
    within-class estimates of the latent state correlate (on held-out speakers)."""
    _, feats, y, train, states = features
    test = ~train
    resid = {}
    for m in ("video", "audio", "truth"):
        pred = states[test] if m == "truth" else Ridge(alpha=30.0).fit(feats[m][train], states[train]).predict(
            feats[m][test])
        for k in np.unique(y):
            pred[y[test] == k] -= pred[y[test] == k].mean(0)
        resid[m] = pred
    corr = lambda a, b, d: float(np.corrcoef(a[:, d], b[:, d])[0, 1])  # noqa: E731
    arousal = 1
    print("\nwithin-class arousal correlation video-audio %.2f, video-truth %.2f, audio-truth %.2f" % (
        corr(resid["video"], resid["audio"], arousal), corr(resid["video"], resid["truth"], arousal),
        corr(resid["audio"], resid["truth"], arousal)))
    assert corr(resid["video"], resid["truth"], arousal) > 0.3
    assert corr(resid["audio"], resid["truth"], arousal) > 0.3
    assert corr(resid["video"], resid["audio"], arousal) > 0.2


# ----- speakers and speed ---------------------------------------------------------------------------------------
def test_split_speakers_and_speaker_option():
    corpus = SyntheticCorpus()
    kept, held = split_speakers(corpus, held_out=[8, 9, "s10", 11])
    assert {r.groups["speaker"] for r in held} == {"s08", "s09", "s10", "s11"}
    assert {r.groups["speaker"] for r in kept} == {f"s{i:02d}" for i in range(8)}
    pre = SyntheticCorpus(speakers=list(range(8)))
    assert [r.id for r in pre.records()] == [r.id for r in kept]
    assert [r.sources for r in pre.records()] == [r.sources for r in kept]
    with pytest.raises(ValueError, match="s12"):
        split_speakers(corpus.records(), held_out=[12])


def test_generation_speed():
    corpus = SyntheticCorpus(seed=11)
    recs = corpus.records()[:200]
    start = time.perf_counter()
    for r in recs:
        corpus.load(r, ALL)
    total = time.perf_counter() - start
    print(f"\ngenerated {len(recs)} clips in {total:.2f} s ({1000 * total / len(recs):.1f} ms/clip)")
    assert total < 10.0


def test_speaker_spread_scales_trait_deviations_around_the_average():
    """spread s moves every speaker's traits to centre + s * (trait at spread 1 - centre); 0 makes speakers alike."""
    full, half, none = (SyntheticCorpus(num_speakers=6, speaker_spread=s) for s in (1.0, 0.5, 0.0))
    for spk in range(6):
        f1, fh, f0 = (c.speaker_traits(spk).face for c in (full, half, none))
        v1, vh, v0 = (c.speaker_traits(spk).voice for c in (full, half, none))
        assert f0.face_w == pytest.approx((0.52 + 0.68) / 2) and f0.background == (130.0, 130.0, 130.0)
        assert fh.face_w == pytest.approx(0.6 + 0.5 * (f1.face_w - 0.6))
        assert fh.background[0] == pytest.approx(130.0 + 0.5 * (f1.background[0] - 130.0))
        centre = np.sqrt(90.0 * 230.0)  # geometric middle of the f0 range
        assert v0.f0 == pytest.approx(centre) and v0.loudness_db == pytest.approx(-27.0)
        assert np.log(vh.f0 / centre) == pytest.approx(0.5 * np.log(v1.f0 / centre))
        assert vh.tilt == pytest.approx(0.5 * v1.tilt)
    # spread 0: every speaker's face and voice are the same; default spread keeps the corpus unchanged
    assert len({none.speaker_traits(s).face for s in range(6)}) == 1
    assert len({none.speaker_traits(s).voice for s in range(6)}) == 1
    default = SyntheticCorpus(num_speakers=6)
    assert all(default.speaker_traits(s) == full.speaker_traits(s) for s in range(6))
    with pytest.raises(ValueError, match="speaker_spread"):
        SyntheticConfig(speaker_spread=-0.1)
