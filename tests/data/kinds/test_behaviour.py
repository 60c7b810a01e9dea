"""Normalisation rows, standardisation and raw baselines of every kind, against numpy references of what the
isinstance chains they replace did."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from contrastive_mer.data.kinds import INPUT_KINDS
from contrastive_mer.data.normalization import (
    EPS,
    GroupNormalizer,
    moments,
    standardise,
    standardise_present,
    zscore_by_group,
)
from contrastive_mer.evaluation.baselines import RawFeatures, raw_features

RNG = np.random.default_rng(0)


def _z(rows: np.ndarray, eps: float = EPS) -> np.ndarray:
    """The reference rule: population std, columns with std <= eps become 0."""
    mean, std = rows.mean(0), rows.std(0)
    return np.where(std > eps, (rows - mean) / np.where(std > eps, std, 1.0), 0.0)


def _fake(kind: str, has_time: bool) -> SimpleNamespace:
    """A stand-in preprocessor (rows and baselines read only ``kind`` and ``has_time``)."""
    return SimpleNamespace(kind=kind, has_time=has_time)


# (kind, has_time, tensor, reference rows): log-mel bands are channels, vectors their dimensions
CASES = [
    ("logmel", True, RNG.normal(size=(6, 9)), lambda x: x.T),
    ("vector", False, RNG.normal(size=5), lambda x: x[None]),
    ("vector", True, RNG.normal(size=(7, 5)), lambda x: x),
    ("opensmile", False, RNG.normal(size=88), lambda x: x[None]),
    ("opensmile", True, RNG.normal(size=(7, 25)), lambda x: x),
    ("logmel_stats", False, RNG.normal(size=12), lambda x: x[None]),
]


@pytest.mark.parametrize("name, has_time, x, ref", CASES)
def test_rows_and_utterance_standardisation_match_numpy(name, has_time, x, ref):
    kind, prep = INPUT_KINDS.get(name), _fake(name, has_time)
    t = torch.tensor(x, dtype=torch.float32)
    rows = kind.to_rows(prep, t)
    np.testing.assert_array_equal(rows.numpy(), ref(t.numpy()))
    assert torch.equal(kind.from_rows(prep, rows), t)
    assert kind.has_frames(prep) == (has_time and name != "logmel_stats")
    assert kind.window_length(prep, 4, None) == (4 if has_time else 0)
    assert kind.window_length(prep, 4, 2) == (2 if has_time else 0)
    if has_time:  # utterance mode: the clip's own frames
        norm = GroupNormalizer({"m": "utterance"}, {"m": prep})  # type: ignore[dict-item]
        got = norm({"m": t}, {})["m"].numpy()
        want = _z(ref(t.numpy()).astype(np.float64))
        np.testing.assert_allclose(ref(got), want, atol=1e-5)


def test_frames_and_tokens_are_not_standardised_and_windows_follow_the_old_rules():
    frames, tokens = INPUT_KINDS.get("frames"), INPUT_KINDS.get("tokens")
    for kind in (frames, tokens):
        assert not kind.standardisable
        with pytest.raises(ValueError, match="cannot be standardised"):
            kind.to_rows(_fake(kind.name, True), torch.zeros(2, 3))
    assert frames.window_length(_fake("frames", True), 16, None) == 0  # only when modality_frames names it
    assert frames.window_length(_fake("frames", True), 16, 3) == 3
    assert tokens.window_length(_fake("tokens", True), 16, 3) == 0  # never


def test_baselines_match_numpy():
    mel = torch.tensor(RNG.normal(size=(6, 9)), dtype=torch.float32)
    np.testing.assert_allclose(raw_features(_fake("logmel", True), mel),
                               np.concatenate([mel.numpy().mean(1), mel.numpy().std(1)]), atol=1e-6)
    video = torch.tensor(RNG.normal(size=(3, 3, 16, 16)), dtype=torch.float32)
    grid = video.numpy().reshape(3, 3, 8, 2, 8, 2).mean((3, 5)).reshape(3, -1)  # 2x2 blocks -> 8x8
    np.testing.assert_allclose(raw_features(_fake("frames", True), video),
                               np.concatenate([grid.mean(0), grid.std(0)]), atol=1e-5)
    ids = torch.tensor([0, 2, 5, 5, 517, 9, 3])
    want = np.zeros(512)
    for i in (5, 5, 517 % 512, 9):
        want[i] += 1
    np.testing.assert_allclose(raw_features(_fake("tokens", True), ids), want / 4)
    for name in ("vector", "opensmile", "logmel_stats"):
        vec = torch.tensor(RNG.normal(size=7), dtype=torch.float32)
        np.testing.assert_array_equal(raw_features(_fake(name, False), vec), vec.numpy())
        seq = torch.tensor(RNG.normal(size=(5, 7)), dtype=torch.float32)
        np.testing.assert_allclose(raw_features(_fake(name, True), seq),
                                   np.concatenate([seq.numpy().mean(0), seq.numpy().std(0)]), atol=1e-6)


# ------------------------------------------------------------------------------ the one standardiser
def test_one_rule_for_constant_columns_in_numpy_and_torch():
    X = RNG.normal(size=(20, 4)) * [1.0, 1e-9, 3.0, 0.0] + [0.0, 4.0, -2.0, 7.0]
    want = _z(X)
    assert np.all(want[:, [1, 3]] == 0.0)  # near-constant and constant columns: 0, not centred or scaled up
    np.testing.assert_allclose(standardise(X, *moments(X)), want)
    t = torch.tensor(X)
    np.testing.assert_allclose(standardise(t, t.mean(0), t.std(0, unbiased=False)).numpy(), want, atol=1e-12)
    t32 = t.float()
    out = standardise(t32, t32.mean(0), t32.std(0, unbiased=False))
    assert out.dtype == torch.float32 and torch.all(out[:, [1, 3]] == 0)


def test_zscore_by_group_and_standardise_present_follow_the_rule():
    X = RNG.normal(size=(30, 3)) * [1.0, 2.0, 0.0]
    groups = np.repeat(["a", "b", "c"], 10)
    Z = zscore_by_group(X, groups)
    for g in "abc":
        np.testing.assert_allclose(Z[groups == g], _z(X[groups == g]), atol=1e-6)
    present = np.arange(30) % 4 != 0
    fit = np.arange(30) < 20
    got = standardise_present(X, present, fit)
    rows = present & fit
    mean, std = X[rows].mean(0), X[rows].std(0)
    want = np.where(std > EPS, (X - mean) / np.where(std > EPS, std, 1.0), 0.0)
    np.testing.assert_allclose(got[present], want[present], atol=1e-6)
    assert np.all(got[~present] == 0)
    # the old raw-view rule divided by std + 1e-6: the same numbers to ~1e-6 relative where std ~ 1
    old = (X - mean) / (std + 1e-6)
    np.testing.assert_allclose(got[present][:, :2], old[present][:, :2], rtol=1e-5, atol=1e-6)
    raw = RawFeatures(["x"] * 30, {"m": X.astype(np.float32)}, {"m": present})
    np.testing.assert_allclose(raw.concat(fit_rows=fit), got, atol=1e-5)
    # no fit row at all: the identity on present rows
    np.testing.assert_allclose(standardise_present(X, present, np.zeros(30, bool))[present], X[present], atol=1e-6)


def test_front_end_decodes_an_audio_path_for_log_mel_statistics(tmp_path):
    """A file path for a ``logmel_stats`` input (no front-end branch before the kinds package) is decoded as
    audio with the preprocessor's sample rate, as ``logmel`` paths are."""
    import wave

    from contrastive_mer.frontend.sources import prepare_batch

    rate = 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate // 2) / rate) * 32767).astype(np.int16)
    with wave.open(str(tmp_path / "clip.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    kinds = {n: INPUT_KINDS.get(n) for n in ("logmel", "logmel_stats")}
    preps = {"mel": kinds["logmel"].build(kinds["logmel"].config_cls(n_mels=16)),
             "stats": kinds["logmel_stats"].build(kinds["logmel_stats"].config_cls(n_mels=16, input_dim=32))}
    batch = prepare_batch(preps, [{"mel": tmp_path / "clip.wav", "stats": str(tmp_path / "clip.wav")}])
    mel = batch.inputs["mel"][0]
    np.testing.assert_allclose(batch.inputs["stats"][0].numpy(), raw_features(preps["mel"], mel), atol=1e-4)
