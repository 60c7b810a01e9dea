"""trainer.fast_dev_run, trainer.max_steps and trainer.limit_val_batches reach Lightning's Trainer."""

from __future__ import annotations

import json

import pytest
from pytorch_lightning.callbacks import Callback

from contrastive_mer.config import ConfigError
from contrastive_mer.experiment import load_config
from contrastive_mer.pretrain.loop import pretrain
from tests.conftest import DEMO, TINY


class Counter(Callback):
    """Counts the training and validation batches a run goes through."""

    def __init__(self) -> None:
        self.train = self.val = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, idx) -> None:
        self.train += 1

    def on_validation_batch_end(self, trainer, module, outputs, batch, idx, dataloader_idx=0) -> None:
        self.val += 1


def test_max_steps_and_limit_val_batches(tmp_path):
    # 3 speakers x 8 emotions x 4 clips, one speaker validates: 8 training batches, 4 validation batches an epoch
    cfg = load_config(DEMO, TINY + ["trainer.max_epochs=5", "trainer.max_steps=10", "trainer.limit_val_batches=1"])
    assert cfg.trainer.limit_val_batches == 1 and isinstance(cfg.trainer.limit_val_batches, int)
    counter = Counter()
    result = pretrain(cfg, tmp_path / "run", extra_callbacks=[counter])
    assert counter.train == 10  # 8 in epoch 1, then max_steps stops epoch 2 after 2 (before its validation)
    assert counter.val == 1  # one validation batch (of 4), at the end of epoch 1
    assert result.checkpoint.is_file()


def test_fast_dev_run(tmp_path, capsys):
    counter = Counter()
    result = pretrain(load_config(DEMO, TINY + ["trainer.fast_dev_run=2", "trainer.max_epochs=4"]),
                      tmp_path / "run", extra_callbacks=[counter])
    assert (counter.train, counter.val) == (2, 2)
    assert not result.checkpoint.exists()  # Lightning writes no checkpoint in a dev run, and pretrain says so
    assert "fast_dev_run" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 1


def test_fraction_limits_are_kept_as_fractions():
    cfg = load_config(DEMO, TINY + ["trainer.limit_val_batches=0.5", "trainer.limit_train_batches=0.25"])
    assert cfg.trainer.limit_val_batches == 0.5 and cfg.trainer.limit_train_batches == 0.25


@pytest.mark.parametrize("override, key", [
    ("trainer.limit_val_batches=1.5", "trainer.limit_val_batches"),
    ("trainer.limit_train_batches=-2", "trainer.limit_train_batches"),
    ("trainer.fast_dev_run=-1", "trainer.fast_dev_run"),
    ("trainer.fast_dev_run=maybe", "trainer.fast_dev_run"),
    ("trainer.max_steps=-5", "trainer.max_steps"),
])
def test_bad_values_are_refused(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(DEMO, TINY + [override])


def test_lightning_accelerator_noise_is_dropped(caplog):
    """The TPU/HPU lines name accelerators the library never uses; the GPU line stays (it says what runs)."""
    import logging

    from contrastive_mer.pretrain.progress import quiet_lightning

    quiet_lightning()
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        logger.info("GPU available: False, used: False")
        logger.info("TPU available: False, using: 0 TPU cores")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
