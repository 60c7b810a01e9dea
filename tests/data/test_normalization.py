"""Label-free standardisation per speaker / per utterance, against numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_mer.config import ConfigError
from contrastive_mer.data.datamodule import build_preprocessors
from contrastive_mer.data.dataset import MERDataset, PreparedSample
from contrastive_mer.data.datasets.synthetic import SyntheticCorpus
from contrastive_mer.data.kinds import LogMel, LogMelConfig, Vector, VectorConfig
from contrastive_mer.data.normalization import GroupNormalizer, zscore_by_group
from contrastive_mer.experiment import load_config
from tests.conftest import DEMO, TINY


def _numpy_group_z(rows: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean, std = rows.mean(0), rows.std(0)
    return (rows - mean) / np.where(std > eps, std, 1.0)


def _clips(rng, speakers=3, per=4):
    """Log-mel (8, T) and vector (5,) inputs with a speaker offset, T varying per clip."""
    out = []
    for s in range(speakers):
        for i in range(per):
            mel = torch.tensor(rng.normal(3 * s, 1 + s, size=(8, int(rng.integers(5, 12)))), dtype=torch.float32)
            vec = torch.tensor(rng.normal(-2 * s, 0.5 + s, size=5), dtype=torch.float32)
            out.append(({"audio": mel, "au": vec}, {"speaker": f"s{s}"}))
    return out


def _preps():
    return {"audio": LogMel(LogMelConfig(n_mels=8)), "au": Vector(VectorConfig(input_dim=5))}


def test_speaker_statistics_match_numpy():
    clips = _clips(np.random.default_rng(0))
    norm = GroupNormalizer({"audio": "speaker", "au": "speaker"}, _preps()).fit(clips)
    for s in ("s0", "s1", "s2"):
        mine = [c for c in clips if c[1]["speaker"] == s]
        frames = np.concatenate([t["audio"].numpy().T for t, _ in mine])  # every frame of the speaker
        vectors = np.stack([t["au"].numpy() for t, _ in mine])
        out = [norm(t, g) for t, g in mine]
        got_frames = np.concatenate([o["audio"].numpy().T for o in out])
        got_vectors = np.stack([o["au"].numpy() for o in out])
        np.testing.assert_allclose(got_frames, _numpy_group_z(frames), atol=1e-4)
        np.testing.assert_allclose(got_vectors, _numpy_group_z(vectors), atol=1e-4)
        assert out[0]["audio"].shape == mine[0][0]["audio"].shape


def test_utterance_mode_and_fallbacks():
    rng = np.random.default_rng(1)
    clips = _clips(rng, speakers=2, per=3)
    norm = GroupNormalizer({"audio": "utterance"}, _preps()).fit(clips)
    t, g = clips[0]
    ref = _numpy_group_z(t["audio"].numpy().T).T
    np.testing.assert_allclose(norm(t, g)["audio"].numpy(), ref, atol=1e-4)
    assert torch.equal(norm(t, g)["au"], t["au"])  # no mode: passed through

    # a speaker seen with one clip (< min_clips) falls back to utterance stats (log-mel) / global stats (vector)
    lone = ({"audio": torch.randn(8, 7), "au": torch.randn(5)}, {"speaker": "new"})
    norm = GroupNormalizer({"audio": "speaker", "au": "speaker"}, _preps(), min_clips=2).fit(clips + [lone])
    assert "new" not in norm.group_statistics("au")
    out = norm(*lone)
    np.testing.assert_allclose(out["audio"].numpy(), _numpy_group_z(lone[0]["audio"].numpy().T).T, atol=1e-4)
    allv = np.stack([c[0]["au"].numpy() for c in clips + [lone]])
    mean, std = allv.mean(0), allv.std(0)
    np.testing.assert_allclose(out["au"].numpy(), (lone[0]["au"].numpy() - mean) / std, atol=1e-4)


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="no frames"):
        GroupNormalizer({"au": "utterance"}, _preps())
    with pytest.raises(ValueError, match="no such modality"):
        GroupNormalizer({"video": "speaker"}, _preps())
    with pytest.raises(RuntimeError, match="fit"):
        GroupNormalizer({"au": "speaker"}, _preps())({"au": torch.zeros(5)}, {"speaker": "a"})


def test_zscore_by_group_matches_numpy_and_uses_own_rows_only():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 4)) * [1, 2, 3, 0] + [0, 5, -5, 1]
    groups = np.repeat(["a", "b", "c"], 10)
    Z = zscore_by_group(X, groups)
    for g in "abc":
        rows = groups == g
        ref = _numpy_group_z(X[rows], eps=1e-8)
        ref[:, 3] = 0.0  # constant column
        np.testing.assert_allclose(Z[rows], ref, atol=1e-5)
    X2 = X.copy()
    X2[groups == "a"] += 100.0  # changing one group's rows leaves the others untouched
    np.testing.assert_allclose(zscore_by_group(X2, groups)[groups != "a"], Z[groups != "a"], atol=1e-5)


def test_dataset_normalizes_per_speaker_from_config():
    cfg = load_config(DEMO, TINY + ["data.normalize.audio=speaker"])
    corpus = SyntheticCorpus(num_speakers=3, clips_per_speaker_emotion=2, frame_size=32, num_frames=4,
                             missing_fraction=0.0)
    pre = build_preprocessors(cfg)
    plain = MERDataset(corpus, corpus.records(), pre, cache="memory")
    normed = MERDataset(corpus, corpus.records(), pre, cache="memory", normalize=cfg.data.normalize)
    by_speaker: dict[str, list[np.ndarray]] = {}
    for i in range(len(plain)):
        a, b = plain[i], normed[i]
        assert isinstance(a, PreparedSample) and isinstance(b, PreparedSample)
        assert torch.equal(a.tensors["video"], b.tensors["video"])
        by_speaker.setdefault(a.groups["speaker"], []).append((a.tensors["audio"].numpy(), b.tensors["audio"].numpy()))
    for pairs in by_speaker.values():
        raw = np.concatenate([p[0].T for p in pairs])
        got = np.concatenate([p[1].T for p in pairs])
        np.testing.assert_allclose(got, _numpy_group_z(raw), atol=1e-3)
    assert not np.allclose(plain[0].tensors["audio"].numpy(), normed[0].tensors["audio"].numpy())


def test_config_refuses_normalizing_frames():
    with pytest.raises(ConfigError, match="data.normalize.video"):
        load_config(DEMO, TINY + ["data.normalize.video=speaker"])
    with pytest.raises(ConfigError, match="data.normalize.nope"):
        load_config(DEMO, TINY + ["data.normalize.nope=speaker"])
