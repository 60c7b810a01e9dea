"""Pretraining: run directory, callbacks, Lightning Trainer, and ``pretrain()`` (what ``cmer pretrain`` calls)."""

from __future__ import annotations

import json
import warnings
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from contrastive_mer.config import load_config, to_yaml
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.data.dataset import SkipReport
from contrastive_mer.encoding import SkipTracker
from contrastive_mer.errors import UserError
from contrastive_mer.module import PairwiseContrastiveModule

# noise from Lightning's own internals on current torch; nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class RngStateCallback(Callback):
    """Saves and restores Python, NumPy and torch RNG states in checkpoints (as plain lists/tensors, so
    checkpoints stay loadable with ``weights_only=True``)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        checkpoint["rng_states"] = {
            "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "torch": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        py = states["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        np_state = states["numpy"]
        np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
        torch.set_rng_state(states["torch"])


class SkipReportCallback(Callback):
    """Records clips dropped from batches (undecodable input) and stops when too many are skipped."""

    def __init__(self, report: SkipReport):
        self.report = report
        self.track = SkipTracker(report)

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, idx: int) -> None:
        self.track(batch)

    def on_validation_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, idx: int,
                                  dataloader_idx: int = 0) -> None:
        self.track(batch)

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.report.entries:
            print(f"[cmer] {self.report.summary()}")


class HistoryCallback(Callback):
    """Appends every epoch's scalar metrics to ``history.json`` in the run directory (for plots and reports)."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        history = json.loads(self.path.read_text()) if self.path.is_file() else []
        history = [h for h in history if h["epoch"] < trainer.current_epoch]  # after a resume
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items()
                    if torch.is_tensor(v) and v.numel() == 1 and not k.endswith("_step")})
        history.append(row)
        self.path.write_text(json.dumps(history, indent=1))


@dataclass
class PretrainResult:
    run_dir: Path
    checkpoint: Path
    best_checkpoint: Path | None
    metrics: dict[str, float]
    seconds: float
    is_global_zero: bool = True


def make_run_dir(cfg: DictConfig, output: str | Path | None) -> Path:
    if output is not None:
        return Path(output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.output_dir) / f"{cfg.name}-{stamp}"


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks: list[Callback] | None = None,
                  has_val: bool = True) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A Trainer with TensorBoard logging, last/best checkpoints, LR monitor and optional early stopping."""
    t = cfg.trainer
    monitor = "val/loss" if has_val else "train/loss_epoch"
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", monitor=monitor,
                           mode="min", save_top_k=1, auto_insert_metric_name=False)
    # last.ckpt is rewritten after every epoch, whether or not the monitored loss improved
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           every_n_epochs=1, enable_version_counter=False)
    callbacks: list[Callback] = [ckpt, last, LearningRateMonitor(logging_interval="epoch"), RngStateCallback()]
    if t.early_stopping_patience is not None and has_val:
        callbacks.append(EarlyStopping(monitor=monitor, patience=t.early_stopping_patience, mode="min"))
    callbacks += extra_callbacks or []
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    precision = "32-true" if t.precision == "32" else t.precision
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, precision=precision, log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip_val, accumulate_grad_batches=t.accumulate_grad_batches,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_train_batches=t.limit_train_batches if t.limit_train_batches is not None else 1.0,
        enable_progress_bar=t.enable_progress_bar, deterministic=t.deterministic, sync_batchnorm=t.sync_batchnorm,
        callbacks=callbacks,
        logger=logger, default_root_dir=str(run_dir), enable_model_summary=False,
        num_sanity_val_steps=0, use_distributed_sampler=False)
    return trainer, ckpt


def pretrain(cfg: DictConfig, output: str | Path | None = None, resume: bool = False,
             extra_callbacks: list[Callback] | None = None) -> PretrainResult:
    """Train the encoders without labels; returns the run directory and checkpoint paths.

    With ``resume``, continues from ``<output>/checkpoints/last.ckpt`` (optimiser, scheduler, epoch, RNG).
    """
    run_dir = make_run_dir(cfg, output)
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise UserError(f"--resume: no checkpoint to resume from at {last}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data = MERDataModule(cfg)
    data.setup("fit")
    module = PairwiseContrastiveModule(cfg)
    if cfg.trainer.compile:
        for name in module.modalities:
            module.encoders[name] = torch.compile(module.encoders[name])
    report = SkipReport(run_dir / "skipped.jsonl", cfg.data.max_skip_fraction)
    callbacks = [SkipReportCallback(report), HistoryCallback(run_dir / "history.json"), *(extra_callbacks or [])]
    trainer, ckpt = build_trainer(cfg, run_dir, callbacks, has_val=data.val_set is not None)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else None
    return PretrainResult(run_dir, last, best, metrics, seconds, trainer.is_global_zero)


def pretrain_from_files(config: str | Path | None, overrides: list[str], output: str | None,
                        resume: bool) -> PretrainResult:
    """CLI entry: on resume without ``--config``, the run directory's saved config is used."""
    if resume and config is None:
        if output is None:
            raise UserError("--resume needs --output RUN_DIR (the run to continue)")
        config = Path(output) / "config.yaml"
    if config is None:
        raise UserError("--config is required")
    return pretrain(load_config(config, overrides), output, resume)
