"""Pretraining: run directory, callbacks, Lightning Trainer, and ``pretrain()`` (what ``cmer pretrain`` calls)."""

from __future__ import annotations

import json
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from contrastive_mer.config import PRECISIONS, ConfigError, checkpoint_monitor, to_yaml
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.data.dataset import SkipReport, SkipTracker
from contrastive_mer.distributed import is_launched_rank
from contrastive_mer.errors import Interrupted, UserError
from contrastive_mer.experiment import load_config
from contrastive_mer.model.checkpoint_io import AtomicCheckpointIO, verify_checkpoint_crc
from contrastive_mer.model.module import NonFiniteTraining, PairwiseContrastiveModule, check_model_fits
from contrastive_mer.pretrain.figures import EmbeddingFiguresCallback
from contrastive_mer.pretrain.interrupt import StopOnSignal, stopped_message
from contrastive_mer.pretrain.progress import (
    EpochBar,
    EpochLineCallback,
    StepLrCallback,
    ThroughputCallback,
    interactive_output,
    quiet_lightning,
)
from contrastive_mer.pretrain.run_dir import lock_run_dir, prepare_run_dir

# noise from Lightning's own internals on current torch; nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class RngStateCallback(Callback):
    """Saves and restores Python, NumPy and torch RNG states in checkpoints (as plain lists/tensors, so
    checkpoints stay loadable with ``weights_only=True``)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
        np_state = np.random.get_state(legacy=True)  # the default; numpy's stub types the no-argument call a dict
        if not isinstance(np_state, tuple):  # legacy=True gives a dict only for bit generators other than MT19937
            raise TypeError(f"numpy's global RNG state is not an MT19937 tuple: {type(np_state).__name__}")
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
        if self.report.total:
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
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items()
                    if torch.is_tensor(v) and v.numel() == 1 and not k.endswith("_step")})
        history.append(row)
        self.path.write_text(json.dumps(history, indent=1))


def warn(message: str) -> None:
    """A warning line on stderr (rank 0 only)."""
    if not is_launched_rank():
        print(f"[cmer] warning: {message}", file=sys.stderr, flush=True)


def _cosine_in(scheduler: Any) -> torch.optim.lr_scheduler.CosineAnnealingLR | None:
    """The cosine schedule itself or inside a warmup ``SequentialLR``."""
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return scheduler
    for inner in getattr(scheduler, "_schedulers", []):
        if isinstance(inner, torch.optim.lr_scheduler.CosineAnnealingLR):
            return inner
    return None


def extend_cosine(scheduler: Any, optimizer: torch.optim.Optimizer, t_max: int, warmup_epochs: int) -> int | None:
    """Re-plan a restored cosine schedule for ``t_max`` epochs (after its warmup); returns the old span, or None
    when it already spans ``t_max``.

    A checkpoint restores the cosine's old ``T_max``: past it the learning rate sits at ``eta_min`` (0) for an
    epoch and then climbs back. The schedule is continued as if it had been planned for the new length: the
    current learning rate becomes the closed-form cosine value at the epoch reached.
    """
    cosine = _cosine_in(scheduler)
    if cosine is None or cosine.T_max == t_max:
        return None
    old, cosine.T_max = cosine.T_max, t_max
    outer_epoch = getattr(scheduler, "last_epoch", cosine.last_epoch)
    if scheduler is cosine or outer_epoch >= warmup_epochs:  # the cosine phase is running
        e = min(cosine.last_epoch, t_max)
        lrs = [cosine.eta_min + (base - cosine.eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2
               for base in cosine.base_lrs]
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        cosine._last_lr = list(lrs)
        if scheduler is not cosine:
            scheduler._last_lr = list(lrs)
    return old


class ExtendScheduleCallback(Callback):
    """On resume with a different ``trainer.max_epochs``, stretch the restored cosine schedule to the new length
    (see :func:`extend_cosine`) and say so."""

    def __init__(self, max_epochs: int, warmup_epochs: int):
        self.t_max = max(max_epochs - warmup_epochs, 1)
        self.max_epochs, self.warmup_epochs = max_epochs, warmup_epochs

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        for conf, opt in zip(trainer.lr_scheduler_configs, trainer.optimizers):
            old = extend_cosine(conf.scheduler, opt, self.t_max, self.warmup_epochs)
            if old is not None:
                lr = opt.param_groups[0]["lr"]
                warn(f"resumed with trainer.max_epochs={self.max_epochs} but the run's cosine schedule spans "
                     f"{old + self.warmup_epochs} epoch(s): it now spans {self.max_epochs} (learning rate for epoch "
                     f"{trainer.current_epoch + 1}: {lr:.3g})")


def report_face_fallbacks(adapter: Any) -> dict[str, int] | None:
    """Face-crop fallbacks (centre crops where no face was found) counted in this process, or None."""
    cropper = getattr(adapter, "cropper", None)
    calls = getattr(cropper, "calls", 0)
    if not calls or cropper is None:
        return None
    fallbacks = int(cropper.fallbacks)
    if fallbacks:
        print(f"[cmer] face crop: no face found in {fallbacks} of {calls} frames ({100 * fallbacks / calls:.1f}%); "
              "those were centre-cropped")
    return {"frames": int(calls), "fallbacks": fallbacks}


def write_data_summary(data: MERDataModule, run_dir: Path, resume: bool) -> dict[str, Any]:
    """Print the data summary, save it as ``data_summary.json`` and the split as ``split.json`` (rank 0);
    warn when a modality or a loss pair will not train, and on resume when the split differs from the saved one.
    A run none of whose loss pairs has 2 training clips holding both modalities is refused (it would train
    nothing at loss 0)."""
    from contrastive_mer.data.summary import format_summary, refuse_untrainable_pairs
    from contrastive_mer.model.losses import parse_pairs

    cfg = data.cfg
    summary = data.summary(pairs=parse_pairs(list(cfg.loss.pairs), list(cfg.model.modalities)))
    split = data.split()
    if is_launched_rank():
        refuse_untrainable_pairs(summary)
        return summary
    print(format_summary(summary, f"[cmer] data: {summary['dataset']}" +
                         (f" ({summary['root']})" if summary["root"] else "")), flush=True)
    refuse_untrainable_pairs(summary)  # after the table, which shows why
    for line in summary["warnings"]:
        warn(line)
    split_path = run_dir / "split.json"
    if resume and split_path.is_file():
        old = json.loads(split_path.read_text(encoding="utf-8"))
        if any(sorted(old.get(k, [])) != sorted(split.get(k, [])) for k in ("train", "val")):
            warn(f"the split differs from the one saved in {split_path} (config changed?): the resumed run "
                 "trains and validates on other clips")
    (run_dir / "data_summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    split_path.write_text(json.dumps(split), encoding="utf-8")
    return summary


def check_not_finished(run_dir: Path, max_epochs: int) -> None:
    """On resume: refuse a run that already trained ``max_epochs`` epochs (Lightning would silently do nothing)."""
    path = run_dir / "history.json"
    done = len(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else 0
    if done >= max_epochs:
        raise UserError(f"the run in {run_dir} already trained {done} epoch(s) (trainer.max_epochs={max_epochs}); "
                        f"to extend it pass trainer.max_epochs=N with N > {done}")


def online_probe_callbacks(cfg: DictConfig, has_val: bool) -> list[Callback]:
    """The online probe when ``monitor.online_probe.every_n_epochs`` asks for it (and there is validation)."""
    probe = cfg.monitor.online_probe
    if not probe.every_n_epochs:
        return []
    if not has_val:
        if (cfg.monitor.checkpoint or "").startswith("online_probe/"):
            raise UserError(f"monitor.checkpoint: {cfg.monitor.checkpoint} needs validation clips "
                            "(data.val_fraction > 0)")
        warn("monitor.online_probe: no validation clips (data.val_fraction=0), so no online probe")
        return []
    from contrastive_mer.pretrain.online_probe import OnlineProbeCallback

    return [OnlineProbeCallback(probe.every_n_epochs, max_clips=probe.max_clips, label=probe.label,
                                group=cfg.data.split_group, seed=cfg.seed,
                                weight_decays=None if probe.weight_decays is None else list(probe.weight_decays),
                                k=probe.k)]


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


#: ``trainer.precision`` (config.PRECISIONS) as Lightning names it: "32" is "32-true"
_LIGHTNING_PRECISION: dict[str, Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]] = {
    "32": "32-true", "32-true": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed",
    "bf16-true": "bf16-true"}


def lightning_precision(value: str) -> Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]:
    """Lightning's name of a ``trainer.precision`` value; ConfigError for one the config does not allow."""
    if value not in _LIGHTNING_PRECISION:
        raise ConfigError(f"trainer.precision: {value!r} is not one of {', '.join(PRECISIONS)}")
    return _LIGHTNING_PRECISION[value]


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks: list[Callback] | None = None,
                  *, has_val: bool = True) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A Trainer with TensorBoard logging, last/best checkpoints, LR monitor and optional early stopping."""
    t = cfg.trainer
    monitor, mode = checkpoint_monitor(cfg, has_val=has_val)
    # an online-probe metric exists only on probe epochs: the best checkpoint is chosen on those
    every = cfg.monitor.online_probe.every_n_epochs if monitor.startswith("online_probe/") else None
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", monitor=monitor,
                           mode=mode, save_top_k=1, auto_insert_metric_name=False, every_n_epochs=every)
    # last.ckpt is rewritten after every epoch, whether or not the monitored loss improved
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           every_n_epochs=1, enable_version_counter=False)
    # the learning rate of every step; throughput before the callbacks that read it
    callbacks: list[Callback] = [ckpt, last, StepLrCallback(), RngStateCallback(), ThroughputCallback()]
    if t.early_stopping_patience is not None and has_val:
        callbacks.append(EarlyStopping(monitor="val/loss", patience=t.early_stopping_patience, mode="min"))
    callbacks += extra_callbacks or []
    progress_bar = bool(t.enable_progress_bar) and interactive_output()  # a piped log gets one line per epoch
    callbacks.append(EpochLineCallback(enabled=not progress_bar))
    if progress_bar:
        callbacks.append(EpochBar())  # epochs counted from 1, like the epoch lines
    quiet_lightning()
    # no hp_metric placeholder: it would sit at -1 in every run
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    precision = lightning_precision(t.precision)
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, precision=precision, log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip_val, accumulate_grad_batches=t.accumulate_grad_batches,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_train_batches=t.limit_train_batches,  # None: all, without Lightning's notice about 1.0
        limit_val_batches=t.limit_val_batches, max_steps=t.max_steps, fast_dev_run=t.fast_dev_run,
        enable_progress_bar=progress_bar, deterministic=t.deterministic, sync_batchnorm=t.sync_batchnorm,
        callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        logger=logger, default_root_dir=str(run_dir), enable_model_summary=False,
        num_sanity_val_steps=0, use_distributed_sampler=False)
    return trainer, ckpt


def pretrain(cfg: DictConfig, output: str | Path | None = None, *, resume: bool = False,
             extra_callbacks: list[Callback] | None = None, overwrite: bool = False) -> PretrainResult:
    """Train the encoders without labels; returns the run directory and checkpoint paths.

    With ``resume``, continues from ``<output>/checkpoints/last.ckpt`` (optimiser, scheduler, epoch, RNG); a
    larger ``trainer.max_epochs`` extends the run (a cosine schedule is stretched to the new length, with a
    warning). A folder that already holds a run is refused unless ``resume`` or ``overwrite`` (which removes the
    old checkpoints, logs and run files first) is given. The data summary is printed and saved as
    ``data_summary.json``, the split as ``split.json``. The run folder is locked (``<run>/run.lock``) for the
    whole run: another process training in it fails at once naming this one's pid.

    A check run of the demo config shrunk to seconds (``trainer.fast_dev_run``: one batch, no checkpoint):

    >>> import contextlib, io, tempfile
    >>> from contrastive_mer.experiment import load_config
    >>> from contrastive_mer.configs import TINY_DEMO, config_path
    >>> cfg = load_config(config_path("demo.yaml"), [*TINY_DEMO, "trainer.fast_dev_run=true"])
    >>> with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
    ...     result = pretrain(cfg, f"{tmp}/run")
    ...     written = sorted(p.name for p in result.run_dir.iterdir())
    >>> written
    ['config.yaml', 'data_summary.json', 'figures', 'history.json', 'split.json']
    """
    run_dir = make_run_dir(cfg, output)
    lock = lock_run_dir(run_dir)
    try:
        with StopOnSignal() as stop:
            return _pretrain_locked(cfg, run_dir, resume=resume, extra_callbacks=[stop, *(extra_callbacks or [])],
                                    overwrite=overwrite)
    finally:
        if lock is not None:
            lock.release()


def _pretrain_locked(cfg: DictConfig, run_dir: Path, *, resume: bool, extra_callbacks: list[Callback] | None,
                     overwrite: bool) -> PretrainResult:
    """The body of :func:`pretrain`, run while its folder is locked."""
    last = run_dir / "checkpoints" / "last.ckpt"
    check_model_fits(cfg, "config", training=True)  # before the folder, the corpus scan or any weights
    removed = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if removed:
        print(f"[cmer] --overwrite: removed {len(removed)} file(s)/folder(s) of the earlier run in {run_dir}")
    if resume:
        check_not_finished(run_dir, cfg.trainer.max_epochs)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data = MERDataModule(cfg)
    data.setup("fit")
    write_data_summary(data, run_dir, resume)
    module = PairwiseContrastiveModule(cfg)
    if cfg.trainer.compile:
        for name in module.modalities:
            compiled = torch.compile(module.encoders[name])  # an OptimizedModule; typed as a plain callable
            if not isinstance(compiled, torch.nn.Module):
                raise TypeError(f"torch.compile returned a {type(compiled).__name__} for encoder {name!r}")
            module.encoders[name] = compiled
    # rewritten per run; a resumed run keeps the records already there (each once); the scan's skipped rows too
    report = SkipReport(run_dir / "skipped.jsonl", cfg.data.max_skip_fraction, keep=resume)
    if not is_launched_rank():
        report.add_scan(getattr(data.adapter, "skipped", ()))
    report.start(write=not is_launched_rank())
    callbacks = [SkipReportCallback(report), HistoryCallback(run_dir / "history.json"),
                 ExtendScheduleCallback(cfg.trainer.max_epochs, cfg.optim.warmup_epochs), *(extra_callbacks or [])]
    if data.val_set is not None:
        callbacks.append(EmbeddingFiguresCallback(run_dir, cfg.data.split_group, method=cfg.monitor.embedding_map,
                                                  seed=cfg.seed))
    callbacks += online_probe_callbacks(cfg, has_val=data.val_set is not None)
    trainer, ckpt = build_trainer(cfg, run_dir, callbacks, has_val=data.val_set is not None)
    start = time.perf_counter()
    if resume:
        verify_checkpoint_crc(last)
    written_before = last.stat().st_mtime_ns if last.is_file() else None
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    except NonFiniteTraining as err:  # the last finite checkpoint stays; say where it is
        kept = (f"the last finite checkpoint is {last} (resume with: cmer pretrain --output {run_dir} --resume "
                "and a lower optim.lr)" if last.is_file() else "no checkpoint was written")
        raise NonFiniteTraining(f"training stopped: {err}; {kept}") from None
    seconds = time.perf_counter() - start
    stop = next((c for c in callbacks if isinstance(c, StopOnSignal)), None)
    if stop is not None and stop.signum is not None:
        written = last.is_file() and last.stat().st_mtime_ns != written_before
        raise Interrupted(stop.signum, stopped_message(stop, written, last=str(last),
                                                       resume=f"cmer pretrain --output {run_dir} --resume"))
    if cfg.trainer.fast_dev_run and trainer.is_global_zero:
        print(f"[cmer] trainer.fast_dev_run={cfg.trainer.fast_dev_run}: a check run; Lightning wrote no checkpoint "
              "and no TensorBoard log", flush=True)
    faces = report_face_fallbacks(data.adapter) if trainer.is_global_zero else None
    if faces:
        summary_path = run_dir / "data_summary.json"
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
        summary["face_crop"] = faces
        summary_path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else None
    return PretrainResult(run_dir, last, best, metrics, seconds, trainer.is_global_zero)


def pretrain_from_files(config: str | Path | None, overrides: list[str], output: str | None,
                        *, resume: bool, overwrite: bool = False) -> PretrainResult:
    """CLI entry: on resume without ``--config``, the run directory's saved config is used."""
    if resume and config is None:
        if output is None:
            raise UserError("--resume needs --output RUN_DIR (the run to continue)")
        config = Path(output) / "config.yaml"
    if config is None:
        raise UserError("--config is required")
    return pretrain(load_config(config, overrides), output, resume=resume, overwrite=overwrite)
