"""Non-finite weights and losses (issue 22, item 3): a checkpoint holding NaN is refused when loaded, training stops
on a NaN loss or NaN weights keeping the last finite checkpoint, and extraction never writes a non-finite row."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from contrastive_mer.config import to_dict
from contrastive_mer.configs import TINY_DEMO, config_path
from contrastive_mer.errors import UserError
from contrastive_mer.experiment import load_config
from contrastive_mer.extract.extraction import ExtractOptions, extract
from contrastive_mer.model.module import NonFiniteTraining, PairwiseContrastiveModule, load_module
from contrastive_mer.pretrain.loop import pretrain
from contrastive_mer.store.hdf5 import FeatureStore
from tests.conftest import DEMO, TINY, cli_error


def poisoned_checkpoint(tmp_path: Path, key_part: str = "encoders.video") -> tuple[Path, str]:
    """A checkpoint of the tiny demo model whose first ``key_part`` weight holds one NaN and one inf."""
    cfg = load_config(config_path("demo.yaml"), TINY_DEMO)
    module = PairwiseContrastiveModule(cfg)
    state = module.state_dict()
    key = next(k for k, v in state.items() if k.startswith(key_part) and v.is_floating_point() and v.numel() > 2)
    state[key].view(-1)[0] = float("nan")
    state[key].view(-1)[1] = float("inf")
    path = tmp_path / "diverged.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"config": to_dict(cfg)}}, path)
    return path, key


def test_non_finite_weights_are_refused_when_loaded(tmp_path: Path) -> None:
    """load_module: one line naming the file and the first bad tensor with its counts (was: loaded, all-NaN
    features, exit 0); ``cmer extract`` says the same line, exit 2, and writes no store."""
    path, key = poisoned_checkpoint(tmp_path)
    with pytest.raises(UserError) as err:
        load_module(str(path))
    assert str(err.value) == (f"{path}: non-finite weights: tensor {key!r} holds 1 NaN and 1 inf of "
                              f"{torch.load(path, weights_only=True)['state_dict'][key].numel()} values (training "
                              "diverged?); use an earlier checkpoint")
    line = cli_error("extract", "--checkpoint", str(path), "--out", str(tmp_path / "f.h5"), "--device", "cpu")
    assert line == f"cmer extract: error: {err.value}"
    assert not (tmp_path / "f.h5").exists()


class PoisonAt(pl.Callback):
    """Puts a NaN into the first audio encoder weight at the start (``where="start"``: the loss of the next step
    is NaN) or at the end (``"end"``: the weights saved at that epoch's end) of epoch ``epoch`` (1-based)."""

    def __init__(self, epoch: int, where: str):
        self.epoch, self.where = epoch, where

    def _poison(self, module: pl.LightningModule) -> None:
        with torch.no_grad():
            next(module.encoders["audio"].parameters()).view(-1)[0] = float("nan")

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.where == "start" and trainer.current_epoch + 1 == self.epoch:
            self._poison(module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.where == "end" and trainer.current_epoch + 1 == self.epoch:
            self._poison(module)


@pytest.mark.parametrize("where", ["start", "end"])
def test_training_stops_on_non_finite_and_keeps_the_last_finite_checkpoint(tmp_path: Path, where: str) -> None:
    """NaN weights in epoch 2 (a NaN loss at its first step, or NaN weights at its end): pretrain stops with one
    line naming the epoch and the last finite checkpoint, which holds epoch 1 and loads (was: NaN checkpoint,
    exit 0)."""
    cfg = load_config(DEMO, TINY + ["trainer.max_epochs=3", "data.val_fraction=0"])
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    with pytest.raises(NonFiniteTraining) as err, contextlib.redirect_stdout(io.StringIO()):
        pretrain(cfg, run, extra_callbacks=[PoisonAt(2, where)])
    message = str(err.value)
    steps = torch.load(last, map_location="cpu", weights_only=True)["global_step"]  # of epoch 1
    first = (f"the training loss is nan in epoch 2, step {steps + 1} " if where == "start"
             else "the weights are no longer finite in epoch 2 (tensor 'encoders.audio.")
    assert message.startswith(f"training stopped: {first}"), message
    assert message.endswith(f"the last finite checkpoint is {last} (resume with: cmer pretrain --output {run} "
                            "--resume and a lower optim.lr)")
    assert "\n" not in message
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0 and steps > 0
    load_module(str(last))  # finite: loads


def test_extraction_refuses_a_non_finite_row(tmp_path: Path) -> None:
    """A model giving NaN video features (weights poisoned after loading, as a Python caller could): extract()
    stops with one line naming the first clip and the encoder, and leaves no finished store (was: NaN rows)."""
    cfg = load_config(config_path("demo.yaml"), TINY_DEMO)
    module = PairwiseContrastiveModule(cfg)
    with torch.no_grad():
        next(module.encoders["video"].parameters()).fill_(float("nan"))
    out = tmp_path / "feats.h5"
    with pytest.raises(UserError, match=r"^clip '[^']+': the video encoder gave non-finite features \(NaN or inf\) "
                                        r"for \d+ clip\(s\) of this batch; nothing of it was written"):
        extract(module, cfg, out, ExtractOptions(device="cpu", progress=False))
    with pytest.raises(Exception):
        FeatureStore(out)
