"""``cmer extract --checkpoint CKPT [--config CFG] [key=value ...] --out feats.h5``"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by cmer pretrain")
    parser.add_argument("--config", help="experiment YAML for the data section (default: the checkpoint's)")
    parser.add_argument("--out", required=True, help="output HDF5 store")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--fusion", default="concat,mean", help="fusion modes to store (concat, mean, weighted)")
    parser.add_argument("--sequences", default="", help="modalities whose frame-level sequences are stored")
    parser.add_argument("--sequence-dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="data overrides as key=value (e.g. data.root=DIR)")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.extraction import ExtractOptions, extract_from_checkpoint

    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    options = ExtractOptions(batch_size=args.batch_size, num_workers=args.num_workers,
                             fusion_modes=split(args.fusion), sequences=split(args.sequences),
                             sequence_dtype=args.sequence_dtype, device=args.device, overwrite=args.overwrite,
                             progress=not args.no_progress)
    path = extract_from_checkpoint(args.checkpoint, args.out, args.config, args.overrides, options)
    print(f"features written to {path}")
    return 0
