"""Late fusion rules with missing modalities, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_mer.fusion import FusionConfig, check_weights, fuse, fused_dim, parse_weights

# two rows, three modalities; row 0 lacks video, row 1 has only text
FEATS = {
    "audio": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
    "video": np.array([[5.0, 6.0, 7.0], [np.nan, np.nan, np.nan]], np.float32),  # absent row holds NaN
    "text": np.array([[8.0], [9.0]], np.float32),
}
PROJ = {
    "audio": np.array([[3.0, 4.0], [1.0, 0.0]], np.float32),  # norms 5, 1
    "video": np.array([[0.0, 2.0], [7.0, 7.0]], np.float32),
    "text": np.array([[0.0, -1.0], [0.0, 10.0]], np.float32),
}
PRESENT = {"audio": np.array([True, False]), "video": np.array([False, False]), "text": np.array([True, True])}
ORDER = ["audio", "video", "text"]


def test_concat_zero_fills_absent_in_fixed_order() -> None:
    out = fuse(FEATS, PROJ, PRESENT, "concat", modalities=ORDER)
    expected = np.array([[1, 2, 0, 0, 0, 8], [0, 0, 0, 0, 0, 9]], np.float32)
    np.testing.assert_array_equal(out, expected)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    # default order: sorted names (audio, text, video)
    np.testing.assert_array_equal(fuse(FEATS, None, PRESENT, "concat"),
                                  np.array([[1, 2, 8, 0, 0, 0], [0, 0, 9, 0, 0, 0]], np.float32))


def test_concat_append_mask() -> None:
    out = fuse(FEATS, PROJ, PRESENT, "concat", modalities=ORDER, append_mask=True)
    np.testing.assert_array_equal(out[:, 6:], np.array([[1, 0, 1], [0, 0, 1]], np.float32))
    assert out.shape[1] == fused_dim("concat", {m: FEATS[m].shape[1] for m in ORDER}, 2, append_mask=True) == 9


def test_mean_over_present_normalised_projections() -> None:
    out = fuse(FEATS, PROJ, PRESENT, "mean", modalities=ORDER)
    row0 = (np.array([0.6, 0.8]) + np.array([0.0, -1.0])) / 2  # audio and text
    row1 = np.array([0.0, 1.0])  # text only
    np.testing.assert_allclose(out, np.stack([row0, row1]), atol=1e-6)


def test_weighted_renormalises_over_present() -> None:
    w = {"audio": 3.0, "video": 5.0, "text": 1.0}
    out = fuse(FEATS, PROJ, PRESENT, "weighted", weights=w, modalities=ORDER)
    row0 = (3 * np.array([0.6, 0.8]) + 1 * np.array([0.0, -1.0])) / 4  # video's weight is dropped
    row1 = np.array([0.0, 1.0])
    np.testing.assert_allclose(out, np.stack([row0, row1]), atol=1e-6)
    # all present, equal weights == mean
    allp = {m: np.ones(2, bool) for m in ORDER}
    proj = {m: np.nan_to_num(v) + 0.5 for m, v in PROJ.items()}
    np.testing.assert_allclose(fuse(FEATS, proj, allp, "weighted", weights={m: 2.0 for m in ORDER}),
                               fuse(FEATS, proj, allp, "mean"), atol=1e-6)


@pytest.mark.parametrize("mode", ["concat", "mean", "weighted"])
def test_row_without_any_modality_is_zero(mode: str) -> None:
    none = {m: np.array([False, True]) for m in ORDER}
    weights = {m: 1.0 for m in ORDER} if mode == "weighted" else None
    out = fuse(FEATS, PROJ, none, mode, weights=weights, modalities=ORDER, append_mask=True)
    assert np.all(out[0] == 0)  # row 1 (all present) is not checked: its video features are NaN


def test_torch_in_torch_out_and_present_none() -> None:
    feats = {m: torch.tensor(np.nan_to_num(v)) for m, v in FEATS.items()}
    proj = {m: torch.tensor(v) for m, v in PROJ.items()}
    out = fuse(feats, proj, None, "concat", modalities=ORDER)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 6)
    torch.testing.assert_close(out, torch.cat([feats[m] for m in ORDER], dim=1))
    cfg = FusionConfig(mode="mean")
    out = cfg.apply(feats, proj, {m: torch.tensor(v) for m, v in PRESENT.items()}, modalities=ORDER)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), fuse(FEATS, PROJ, PRESENT, "mean", modalities=ORDER), atol=1e-6)
    assert cfg.dim({"audio": 2}, 7) == 7


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown fusion mode 'max'"):
        fuse(FEATS, PROJ, PRESENT, "max")
    with pytest.raises(KeyError, match="no weight for modalities \\['text'\\]"):
        fuse(FEATS, PROJ, PRESENT, "weighted", weights={"audio": 1.0, "video": 1.0}, modalities=ORDER)
    with pytest.raises(ValueError, match="non-negative"):
        fuse(FEATS, PROJ, PRESENT, "weighted", weights={"audio": -1.0, "video": 1.0, "text": 1.0})
    with pytest.raises(KeyError, match="presence mask for modality 'video'"):
        fuse(FEATS, PROJ, {"audio": PRESENT["audio"], "text": PRESENT["text"]}, "concat")
    with pytest.raises(KeyError, match="no input for modalities \\['landmarks'\\]"):
        fuse(FEATS, PROJ, PRESENT, "concat", modalities=["audio", "landmarks"])
    with pytest.raises(ValueError, match="different widths"):
        fuse(FEATS, {**PROJ, "text": np.zeros((2, 3))}, PRESENT, "mean")


def test_weighted_needs_weights_and_parse_weights() -> None:
    # without weights "weighted" would silently equal "mean": it is refused instead
    with pytest.raises(ValueError, match="'weighted' needs a weight per modality"):
        fuse(FEATS, PROJ, PRESENT, "weighted", modalities=ORDER)
    assert parse_weights(" audio=2, video=0.5,,text=1e-1") == {"audio": 2.0, "video": 0.5, "text": 0.1}
    for bad in ("audio", "audio=x", "=1"):
        with pytest.raises(ValueError, match="is not modality=weight"):
            parse_weights(bad)
    assert check_weights({"text": 1, "audio": 3, "extra": 9}, ["audio", "text"]) == [3.0, 1.0]
    with pytest.raises(ValueError, match="finite and non-negative"):
        check_weights({"audio": float("nan")}, ["audio"])


def test_fusion_modes_registry_and_unknown_mode_lists_the_known_ones():
    from contrastive_mer.fusion import FUSION_MODES

    assert FUSION_MODES.names() == ["concat", "mean", "weighted"]
    z = {"a": torch.ones(2, 3), "b": torch.ones(2, 3)}
    with pytest.raises(ValueError, match="unknown fusion mode 'max'; known: concat, mean, weighted"):
        fuse(z, z, None, "max")
    with pytest.raises(ValueError, match="unknown fusion mode 'max'; known: concat, mean, weighted"):
        fused_dim("max", {"a": 3, "b": 3}, 3)


def test_a_registered_fusion_mode_is_used_by_fuse(monkeypatch):
    from contrastive_mer.fusion import FUSION_MODES, FusionMode

    def maximum(xs, mask, order, weights, *, append_mask):
        return torch.stack([torch.where(mask[:, i:i + 1].bool(), x, -torch.inf) for i, x in enumerate(xs)]).amax(0)

    monkeypatch.setitem(FUSION_MODES._entries, "max", FusionMode("features", maximum, lambda dims, p, m: dims[0]))
    feats = {"a": torch.tensor([[1.0, 5.0]]), "b": torch.tensor([[3.0, 2.0]])}
    assert fuse(feats, None, None, "max").tolist() == [[3.0, 5.0]]
    assert fused_dim("max", {"a": 2, "b": 2}, 7) == 2
    assert FusionConfig(mode="max").apply(feats, {}, None).tolist() == [[3.0, 5.0]]
