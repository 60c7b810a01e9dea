"""The run folder of ``cmer pretrain``: refuse to mix two runs in one folder, or clear the old one on request.

A run folder holds ``config.yaml``, ``checkpoints/`` (``last.ckpt``, ``best-*.ckpt``), ``tensorboard/``,
``figures/``, ``history.json``, ``data_summary.json``, ``split.json`` and ``skipped.jsonl``. Training again into a
folder that holds a run without ``--resume`` would overwrite some of these, keep others (an old ``best-*.ckpt``
beside the new one) and mix TensorBoard event files, so it is refused unless ``--overwrite`` is given, which
removes them first.

Two runs at once in one folder are refused too: :func:`lock_run_dir` holds an exclusive lock on
``<run_dir>/run.lock`` (:mod:`contrastive_mer.store.lock`) for as long as the run writes there; a second
``cmer pretrain --output`` of the same folder fails at once naming the first's pid.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from contrastive_mer.distributed import is_launched_rank
from contrastive_mer.errors import UserError
from contrastive_mer.store.lock import WriterLock, acquire, holds

RUN_FILES = ("config.yaml", "history.json", "data_summary.json", "split.json", "skipped.jsonl")
RUN_DIRS = ("tensorboard", "figures")
#: the lock file of a run folder (removed when the run ends; a stale one left by kill -9 blocks nothing)
LOCK_NAME = "run.lock"


def run_artifacts(run_dir: Path) -> list[Path]:
    """What of an earlier run lies in ``run_dir``: checkpoints, TensorBoard logs, run files."""
    found = sorted((run_dir / "checkpoints").glob("*.ckpt")) if (run_dir / "checkpoints").is_dir() else []
    found += [run_dir / d for d in RUN_DIRS if (run_dir / d).exists()]
    found += [run_dir / f for f in RUN_FILES if (run_dir / f).exists()]
    return found


def prepare_run_dir(run_dir: Path, *, resume: bool = False, overwrite: bool = False) -> list[Path]:
    """Check ``run_dir`` before a run writes into it; with ``overwrite``, remove the earlier run's files.

    Returns what was removed. Raises :class:`UserError` (one line) for a folder holding a run when neither
    ``resume`` nor ``overwrite`` is set, for both at once, and for ``resume`` without ``checkpoints/last.ckpt``.
    """
    if resume and overwrite:
        raise UserError("--resume continues the run in --output and --overwrite replaces it: choose one")
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise UserError(f"--resume: no checkpoint to resume from at {last}")
        return []
    if is_launched_rank():
        return []
    found = run_artifacts(run_dir)
    if not found:
        return []
    if not overwrite:
        names = ", ".join(str(p.relative_to(run_dir)) for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserError(f"{run_dir} already holds a run ({names}); continue it with --resume (e.g. "
                        f"`cmer pretrain --output {run_dir} --resume trainer.max_epochs=N`) or replace it with "
                        "--overwrite")
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return found


def lock_run_dir(run_dir: str | Path) -> WriterLock | None:
    """Lock ``run_dir`` for this run (creating the folder), once per process: None when this process already
    holds its lock (``cmer pretrain`` takes it before importing the trainer, so that a second run fails fast;
    :func:`~contrastive_mer.pretrain.loop.pretrain` then runs under it and the first taker releases it), and
    None in a DDP process other than the first, which writes there under rank 0's lock. Raises
    :class:`~contrastive_mer.store.lock.OutputLockedError` (one line, with the holder's pid) when another
    process runs in it."""
    if is_launched_rank():
        return None
    run_dir = Path(run_dir)
    if holds(run_dir, lock_file=run_dir / LOCK_NAME):
        return None
    return acquire(run_dir, "run folder", lock_file=run_dir / LOCK_NAME)
