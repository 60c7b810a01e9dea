"""SpecAugment masking, SCARF corruption and noise of vector inputs, and encoder-output dropout: shapes, values
against a numpy reference, determinism under a seed, training batches only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from contrastive_mer.config import ConfigError, InputAugmentConfig
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.experiment import load_config
from contrastive_mer.model.augment import SpecAugmentConfig, input_augment, spec_augment
from contrastive_mer.model.module import PairwiseContrastiveModule
from tests.conftest import DEMO, TINY


def test_masks_shape_values_and_seed():
    x = torch.randn(4, 16, 50)
    cfg = SpecAugmentConfig(freq_masks=2, freq_width=4, time_masks=2, time_width=10)
    torch.manual_seed(0)
    a = spec_augment(x, cfg)
    torch.manual_seed(0)
    b = spec_augment(x, cfg)
    assert a.shape == x.shape and torch.equal(a, b)
    changed = a != x
    assert changed.any()
    assert torch.allclose(a[changed], torch.full_like(a[changed], float(x.mean())))  # masked to the mean
    for i in range(4):  # at most 2 bands of < 4 bins each and 2 spans of < 10 frames each per clip
        bands = changed[i].all(dim=1).sum()
        frames = changed[i].all(dim=0).sum()
        assert bands <= 2 * 4 and frames <= 2 * 10
    assert torch.equal(spec_augment(x, SpecAugmentConfig()), x)  # all zero: off
    with pytest.raises(ValueError, match="freq_width"):
        SpecAugmentConfig(freq_width=-1)


def _module_and_batch(extra):
    cfg = load_config(DEMO, TINY + extra)
    dm = MERDataModule(cfg)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    return PairwiseContrastiveModule(cfg), batch


def test_masks_only_in_training_steps():
    module, batch = _module_and_batch(["model.modalities.audio.augment.freq_masks=2",
                                        "model.modalities.audio.augment.freq_width=8",
                                        "model.modalities.audio.augment.time_masks=2",
                                        "model.modalities.audio.augment.time_width=20"])
    seen = []
    module.encoders["audio"].register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    module.log = lambda *a, **k: None
    module._trainer = SimpleNamespace(world_size=1)  # the steps only ask the trainer for the world size
    module.training_step(batch, 0)
    module.validation_step(batch, 0)
    module.eval()
    with torch.no_grad():
        module(batch)
    train_in, val_in, eval_in = seen
    assert not torch.equal(train_in, val_in)
    assert torch.equal(val_in, eval_in)
    assert torch.equal(module.augmented(batch).inputs["video"], batch.inputs["video"])


def test_feature_dropout_only_in_training():
    module, batch = _module_and_batch(["model.feature_dropout=0.5"])
    module.train()
    torch.manual_seed(1)
    a = module(batch)[1]["audio"]
    b = module(batch)[1]["audio"]
    assert not torch.allclose(a, b)
    module.eval()
    with torch.no_grad():
        c, d = module(batch)[1]["audio"], module(batch)[1]["audio"]
    assert torch.equal(c, d)


def test_config_checks_augment():
    with pytest.raises(ConfigError, match="model.modalities.video.augment: SpecAugment masks log-mel inputs only"):
        load_config(DEMO, TINY + ["model.modalities.video.augment.freq_masks=1",
                                  "model.modalities.video.augment.freq_width=2"])
    with pytest.raises(ConfigError, match="feature_dropout"):
        load_config(DEMO, TINY + ["model.feature_dropout=1.5"])


def _scarf_reference(x: np.ndarray, present: np.ndarray, corrupt: float, seed: int) -> np.ndarray:
    """The SCARF rule written out element by element, drawing the same numbers as the library (same generator,
    same order: the mask, then the donor of every element)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(x.shape, generator=g).numpy() < corrupt
    donors = np.flatnonzero(present)
    pick = torch.randint(len(donors), x.shape, generator=g).numpy()
    out = x.copy()
    for i in range(x.shape[0]):
        if not present[i]:
            continue
        for j in range(x.shape[1]):
            if mask[i, j]:
                out[i, j] = x[donors[pick[i, j]], j]
    return out


def test_scarf_corruption_matches_an_element_by_element_reference():
    x = torch.randn(6, 9)
    present = torch.tensor([True, True, False, True, True, True])
    x[2] = 0.0  # an absent clip's row is zeros
    cfg = InputAugmentConfig(corrupt=0.4)
    got = input_augment(x, present, cfg, generator=torch.Generator().manual_seed(3))
    want = _scarf_reference(x.numpy(), present.numpy(), 0.4, seed=3)
    np.testing.assert_array_equal(got.numpy(), want)
    changed = got != x
    assert changed.any() and not changed[2].any()  # something was replaced; the absent row never is
    for i, j in zip(*np.nonzero(changed.numpy())):  # every replaced value is the same feature of a present clip
        assert any(float(got[i, j]) == float(x[k, j]) for k in (0, 1, 3, 4, 5))
    # about 40% of the values are drawn for replacement (some land on their own row or an equal value)
    assert 0.15 < changed[present].float().mean() < 0.45


def test_noise_sd_absent_rows_and_off():
    x = torch.zeros(4000, 8)
    present = torch.ones(4000, dtype=torch.bool)
    present[:10] = False
    noisy = input_augment(x, present, InputAugmentConfig(noise=0.5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[:10], x[:10])
    assert abs(float(noisy[10:].std()) - 0.5) < 0.01 and abs(float(noisy[10:].mean())) < 0.01
    y = torch.randn(5, 3)
    assert torch.equal(input_augment(y, torch.ones(5, dtype=torch.bool), InputAugmentConfig()), y)
    with pytest.raises(ValueError, match="float inputs"):
        input_augment(torch.ones(3, 2, dtype=torch.long), torch.ones(3, dtype=torch.bool), InputAugmentConfig(0.5))
    for bad in ({"corrupt": 1.0}, {"corrupt": -0.1}, {"noise": -1.0}, {"noise": float("inf")}):
        with pytest.raises(ValueError, match="input_augment"):
            InputAugmentConfig(**bad)


def test_input_corruption_only_in_training_steps():
    module, batch = _module_and_batch(["model.modalities.video.input_augment.corrupt=0.3",
                                        "model.modalities.video.input_augment.noise=0.1"])
    seen = []
    module.encoders["video"].register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    module.log = lambda *a, **k: None
    module._trainer = SimpleNamespace(world_size=1)
    module.training_step(batch, 0)
    module.validation_step(batch, 0)
    train_in, val_in = seen
    assert not torch.equal(train_in, val_in) and torch.equal(val_in, batch.inputs["video"])
    assert torch.equal(module.augmented(batch).inputs["audio"], batch.inputs["audio"])  # only where configured


def test_config_checks_input_augment():
    with pytest.raises(ConfigError, match="model.modalities.video.input_augment.corrupt must be in"):
        load_config(DEMO, TINY + ["model.modalities.video.input_augment.corrupt=1.5"])
    with pytest.raises(ConfigError, match="model.modalities.text.input_augment: token ids cannot be corrupted"):
        load_config(DEMO, TINY + ["model.modalities.text.input_augment.noise=0.1"])
