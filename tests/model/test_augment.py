"""SpecAugment masking and encoder-output dropout: shapes, determinism under a seed, training batches only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from contrastive_mer.config import ConfigError
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.experiment import load_config
from contrastive_mer.model.augment import SpecAugmentConfig, spec_augment
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
