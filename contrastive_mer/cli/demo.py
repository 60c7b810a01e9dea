"""``cmer demo [--fast] [--output RUN_DIR] [key=value ...]``"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fast", action="store_true", help="a quick look: fewer clips and epochs")
    add_output_dir(parser, "the run (default: runs/demo-<time>)")
    parser.add_argument("--config", help="experiment YAML (default: the packaged demo.yaml, the same as "
                                         "experiments/demo.yaml)")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.config import precheck
    from contrastive_mer.configs import config_path

    precheck(args.config or config_path("demo.yaml"), args.overrides)  # before torch is imported
    from contrastive_mer.workflows.demo import run_demo

    run_demo(args.output, fast=args.fast, overrides=args.overrides, config=args.config)
    return 0
