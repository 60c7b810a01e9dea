"""Stopping a pretraining run on SIGTERM / SIGINT without calling it a success.

Before training (the corpus scan, building the model) the first signal stops at once. While training, it asks
the Trainer to stop after the current batch: the epoch is cut short, closed like any other (``last.ckpt`` is
written) and :func:`pretrain <contrastive_mer.pretrain.loop.pretrain>` raises :class:`~contrastive_mer.errors.
Interrupted` naming that checkpoint and the ``--resume`` command. A second signal stops at once. Lightning's own
SIGTERM handler (which stops mid-epoch without a checkpoint and exits 0) is replaced while training.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from contrastive_mer.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopOnSignal(Callback):
    """Signal handlers for the whole of one pretraining run (install with ``with``); a callback of its Trainer."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.epoch: int | None = None  # the 1-based epoch the signal arrived in (None: before training)
        self._trainer: pl.Trainer | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = signum
        if self._trainer is None:  # not training yet: nothing to save
            raise Interrupted(signum, f"stopped by {signal_name(signum)} before training started; nothing was trained")
        if not first:  # a second signal: stop now
            raise Interrupted(signum, f"stopped by a second {signal_name(signum)} in epoch {self.epoch}")
        self.epoch = self._trainer.current_epoch + 1
        self._trainer.should_stop = True

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           idx: int) -> None:
        """Under DDP every rank stops after the same batch when any rank was signalled."""
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            trainer.should_stop = True

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        for signum in SIGNALS:
            self._old.setdefault(signum, signal.getsignal(signum))
            signal.signal(signum, self._handle)

    def __enter__(self) -> StopOnSignal:
        self._install()
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()
        self._trainer = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._trainer = trainer
        self._install()  # after Lightning registered its own SIGTERM handler


def stopped_message(stop: StopOnSignal, checkpoint_written: bool, *, last: str, resume: str) -> str:
    """What a run stopped by ``stop.signum`` says: the epoch, the checkpoint and the resume command."""
    assert stop.signum is not None
    where = f"in epoch {stop.epoch}" if stop.epoch else "before training started"
    if not checkpoint_written:
        return f"stopped by {signal_name(stop.signum)} {where}; no checkpoint was written, so nothing to resume"
    return (f"stopped by {signal_name(stop.signum)} {where} (the epoch was cut short and closed); checkpoint: "
            f"{last}; resume with: {resume}")

