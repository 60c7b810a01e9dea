"""``cmer evaluate --checkpoint CKPT [--config CFG] --folds K --group speaker --label emotion --out DIR``

Pretrained vs random-init encoders vs raw-input baselines, group-disjoint K-fold linear and kNN probes."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", help="experiment YAML for the data section (default: the checkpoint's)")
    parser.add_argument("--out", required=True, help="output folder (stores, evaluation.json/.txt)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--group", default="speaker")
    parser.add_argument("--label", default="emotion")
    parser.add_argument("--probe", choices=["linear", "knn", "both"], default="both")
    parser.add_argument("--fusion", default="concat,mean")
    parser.add_argument("overrides", nargs="*", help="data overrides as key=value")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.config import to_dict
    from contrastive_mer.evaluation.comparison import evaluate_folds
    from contrastive_mer.extraction import extraction_config, file_sha256
    from contrastive_mer.module import load_module

    module = load_module(args.checkpoint)
    cfg = extraction_config(to_dict(module.cfg), args.config, args.overrides)
    probes = ("linear", "knn") if args.probe == "both" else (args.probe,)
    report = evaluate_folds(cfg, module, args.out, label=args.label, group=args.group, folds=args.folds,
                            probes=probes, checkpoint_sha256=file_sha256(args.checkpoint),
                            fusion_modes=[m for m in args.fusion.split(",") if m])
    print(report["text"])
    print(f"report written to {args.out}/evaluation.json")
    return 0
