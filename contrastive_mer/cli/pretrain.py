"""``cmer pretrain --config CFG [key=value ...] [--output RUN_DIR] [--resume | --overwrite]``"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML (e.g. experiments/demo.yaml)")
    add_output_dir(parser, "the run: config, checkpoints, logs (default: <output_dir>/<name>-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output from last.ckpt; trainer.max_epochs=N extends a finished run")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --output (its checkpoints, TensorBoard logs and run files are "
                             "removed first); without it a folder holding a run is refused")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (OmegaConf dotlist)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from contrastive_mer.config import precheck
    from contrastive_mer.pretrain.run_dir import lock_run_dir

    config = args.config or (Path(args.output) / "config.yaml" if args.resume and args.output else None)
    if config is not None and (args.config or Path(config).is_file()):
        precheck(config, args.overrides)  # before torch: a misspelt key or lr=1e400 is reported at once

    created = bool(args.output) and not Path(args.output).exists()
    lock = lock_run_dir(args.output) if args.output else None  # a fresh time-stamped folder needs none
    try:
        from contrastive_mer.pretrain.loop import (
            pretrain_from_files,  # slow: after the lock, so a second run fails fast
        )
        result = pretrain_from_files(args.config, args.overrides, args.output, resume=args.resume,
                                     overwrite=args.overwrite)
    finally:
        if lock is not None:
            lock.release()
        if created and Path(args.output).is_dir() and not any(Path(args.output).iterdir()):
            Path(args.output).rmdir()  # a run refused before it started leaves no empty folder behind
    if not result.is_global_zero:  # DDP: only rank 0 reports
        return 0
    losses = {k: round(v, 4) for k, v in sorted(result.metrics.items()) if "loss" in k or "acc" in k}
    print(f"finished in {result.seconds:.1f} s; final metrics: {losses}")
    print(f"run directory: {result.run_dir}")
    print(f"checkpoint: {result.checkpoint}")
    return 0
