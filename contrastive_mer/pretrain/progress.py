"""What a training log shows: throughput, one line per epoch, and none of Lightning's advertising.

:class:`ThroughputCallback` times each training epoch (clips per second, and the share of the epoch spent waiting
for the next batch, i.e. data loading) and logs ``time/samples_per_sec`` and ``time/data_share``.
:class:`EpochLineCallback` prints one line per epoch (losses, mean in-batch accuracies, learning rate,
throughput) where no progress bar is drawn: with ``trainer.enable_progress_bar=false``, and in logs that are not a
terminal or notebook (:func:`interactive_output`), where a bar would leave only its last frame. Where a bar is
drawn, :class:`EpochBar` counts epochs from 1 like those lines (``Epoch 1/10``). :class:`StepLrCallback` logs
the learning rate of every training step.
:func:`quiet_lightning` drops Lightning's tips and the ``limit_train_batches=1.0`` notice from its log.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import convert_inf

# Lightning's tips, its notice about a limit of 1.0 (the library's default) and accelerators this library never uses
_NOISE = ("litlogger", "💡 Tip", "was configured so 100% of the batches", "TPU available", "HPU available")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in _NOISE)


def quiet_lightning() -> None:
    """Filter Lightning's rank-zero info log (idempotent)."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


class ThroughputCallback(Callback):
    """Clips per second and data-loading share of each training epoch (logged per epoch)."""

    def __init__(self) -> None:
        self.samples_per_sec = float("nan")
        self.data_share = float("nan")

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = self._last_end = time.perf_counter()
        self._wait = 0.0
        self._clips = 0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, idx: int) -> None:
        now = time.perf_counter()
        self._wait += now - self._last_end
        self._clips += len(getattr(batch, "ids", ()))

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           idx: int) -> None:
        self._last_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        elapsed = max(self._last_end - self._start, 1e-9)
        self.samples_per_sec = self._clips / elapsed
        self.data_share = self._wait / elapsed
        module.log("time/samples_per_sec", self.samples_per_sec, on_epoch=True, sync_dist=False)
        module.log("time/data_share", self.data_share, on_epoch=True, sync_dist=False)


def _mean(metrics: dict[str, Any], prefix: str) -> float | None:
    values = [float(v) for k, v in metrics.items() if k.startswith(prefix) and not k.endswith("_step")
              and torch.is_tensor(v) and v.numel() == 1]
    return float(np.mean(values)) if values else None


def epoch_label(epoch: int, max_epochs: int | None) -> str:
    """``epoch 3/10`` for Lightning's 0-based ``epoch`` 2: epochs are counted from 1 wherever a user reads them."""
    shown = max_epochs is not None and max_epochs > 0  # Lightning: None or -1 for no limit
    return f"epoch {epoch + 1}/{max_epochs}" if shown else f"epoch {epoch + 1}"


def epoch_line(epoch: int, max_epochs: int | None, metrics: dict[str, Any], lr: float | None) -> str:
    """``epoch 3/10  train loss 2.310  acc 41.2%  val loss 2.402  acc 38.0%  lr 1.00e-03  84 clips/s  data 12%``
    (with ``probe knn_acc 40.1% linear_acc 45.3%`` before the learning rate on online-probe epochs)."""
    parts = [epoch_label(epoch, max_epochs)]
    for split, loss_key in (("train", "train/loss_epoch"), ("val", "val/loss")):
        loss = metrics.get(loss_key, metrics.get(f"{split}/loss"))
        if loss is None:
            continue
        acc = _mean(metrics, f"{split}/acc_")
        parts.append(f"{split} loss {float(loss):.3f}" + (f"  acc {100 * acc:.1f}%" if acc is not None else ""))
    probe = [(k.rsplit("/", 1)[1], float(v)) for k, v in sorted(metrics.items())
             if k.count("/") == 1 and k.startswith("online_probe/")]  # the fused view's scores
    if probe:
        parts.append("probe " + " ".join(f"{name} {100 * v:.1f}%" if not name.endswith("mae") else f"{name} {v:.3f}"
                                         for name, v in probe))
    if lr is not None:
        parts.append(f"lr {lr:.2e}")
    if "time/samples_per_sec" in metrics:
        parts.append(f"{float(metrics['time/samples_per_sec']):.0f} clips/s")
        parts.append(f"data {100 * float(metrics['time/data_share']):.0f}%")
    return "  ".join(parts)


def interactive_output() -> bool:
    """Whether stdout is a terminal or a notebook (where a progress bar redraws in place)."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules


class EpochLineCallback(Callback):
    """Print :func:`epoch_line` after every epoch (with the learning rate the epoch trained at) when ``enabled``."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self._lr: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking or not trainer.is_global_zero:
            return
        print(f"[cmer] {epoch_line(trainer.current_epoch, trainer.max_epochs, trainer.callback_metrics, self._lr)}",
              flush=True)


class EpochBar(TQDMProgressBar):
    """Lightning's terminal progress bar, its epochs counted from 1 like the log lines (``Epoch 1/10``, where
    Lightning writes ``Epoch 0``)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # TQDMProgressBar's own steps, with the description set before the bar is first drawn
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.set_description(epoch_label(trainer.current_epoch, trainer.max_epochs).capitalize(), refresh=False)
        bar.reset()
        bar.total = convert_inf(self.total_train_batches)
        bar.initial = 0


def learning_rates(trainer: pl.Trainer) -> dict[str, float]:
    """``lr-<Optimizer>`` (``lr-<Optimizer>/pg<i>`` with several parameter groups): the rates the next step uses,
    named as Lightning's ``LearningRateMonitor`` names them."""
    out: dict[str, float] = {}
    for opt in trainer.optimizers:
        name, groups = f"lr-{type(opt).__name__}", opt.param_groups
        for i, group in enumerate(groups):
            out[name if len(groups) == 1 else f"{name}/pg{i + 1}"] = float(group["lr"])
    return out


class StepLrCallback(Callback):
    """Log the learning rate at every optimizer step, straight to the loggers: not thinned to every
    ``trainer.log_every_n_steps`` steps, and also when the scheduler steps per epoch (Lightning's
    ``LearningRateMonitor(logging_interval="step")`` wrote no entry in 6 steps with ``log_every_n_steps=50``,
    with a cosine schedule or none)."""

    def __init__(self) -> None:
        self._last_step = -1

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, idx: int) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or step == self._last_step:  # gradient accumulation: one entry per step
            return
        self._last_step = step
        rates = learning_rates(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(rates, step=step)
