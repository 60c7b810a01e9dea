"""``cmer backbone-export --config CFG --modality M [--layers 6,7,8 | all] --output DIR [key=value ...]``

Writes a frozen speech backbone's layers (a modality whose input is ``hf_audio_cached``) per clip in MERTools'
layout: ``DIR/<name>-L<k>-UTT/<id>.npy`` ``(D,)`` and ``DIR/<name>-L<k>-FRA/<id>.npy`` ``(T, D)``
(:mod:`contrastive_mer.extract.backbone_layers`). Run again to resume: complete clips are not computed again.
"""

from __future__ import annotations

import argparse
from typing import Any

from contrastive_mer.cli._common import add_device, add_output_dir, comma_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML with the modality (input: hf_audio_cached)")
    parser.add_argument("--modality", required=True, help="the modality whose backbone is exported, e.g. speech")
    parser.add_argument("--layers", help="hidden-state indices, comma-separated (0: the input of the first "
                                         "transformer layer, -1: the last), or all; default: the modality's "
                                         "preprocess.layers")
    add_output_dir(parser, "one <name>-L<k>-UTT and -FRA folder per layer, one .npy per clip", required=True)
    parser.add_argument("--name", help="feature name that starts each folder (default: the model folder's name)")
    parser.add_argument("--levels", default="UTT,FRA", help="UTT and/or FRA (default: both)")
    add_device(parser)
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (data.root=DIR, ...)")


def parse_layers(value: str | None) -> Any:
    """``None`` / ``"all"`` / ``"6, 7,8"`` -> None / ``"all"`` / ``[6, 7, 8]`` (UserError naming --layers)."""
    if value is None or value.strip() == "all":
        return None if value is None else "all"
    return comma_list(value, int, "--layers")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.config import precheck

    layers = parse_layers(args.layers)
    levels = comma_list(args.levels, str, "--levels")
    precheck(args.config, args.overrides)  # before torch: a misspelt key is reported at once

    from contrastive_mer.experiment import load_config
    from contrastive_mer.extract.backbone_layers import export_backbone_layers
    from contrastive_mer.extract.encode import resolve_device

    cfg = load_config(args.config, args.overrides)
    result = export_backbone_layers(cfg, args.modality, args.output, layers=layers, name=args.name,
                                    levels=levels, device=str(resolve_device(args.device)))
    print(f"layers {result.layers}: {result.written} clip(s) written, {result.complete} already complete, "
          f"{result.absent} without {args.modality}, {len(result.failed)} failed")
    for sample_id, reason in result.failed[:5]:
        print(f"  failed: {sample_id}: {' '.join(reason.split())}")
    print(f"folders under {result.out_dir}: " + ", ".join(p.name for p in result.folders))
    return 1 if result.failed and not (result.written or result.complete) else 0
