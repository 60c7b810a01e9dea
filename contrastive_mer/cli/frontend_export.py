"""``cmer frontend-export --checkpoint CKPT --config CFG [key=value ...] --out tokens.h5 [--npy-dir DIR]``

Without ``--projector`` the token sources (frame-level encoder sequences, pooled and fused features) are
exported; with ``--projector`` (weights saved by ``FrontEnd.save``) the soft tokens the LLM receives.
"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_device, add_out_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="encoder checkpoint written by cmer pretrain")
    parser.add_argument("--config", help="front-end YAML (frontend: and data: sections), e.g. "
                                         "experiments/mllm_frontend.yaml")
    add_out_file(parser, "the HDF5 token store to write (e.g. tokens.h5)")
    parser.add_argument("--npy-dir", help="also write <dir>/<name>-<source>-UTT/<id>.npy and -FRA/<id>.npy")
    parser.add_argument("--name", default="cmer", help="feature name of the .npy folders (default: cmer)")
    parser.add_argument("--projector", help="front-end weights (.safetensors from FrontEnd.save); its recorded "
                                            "encoder SHA-256 must match --checkpoint")
    parser.add_argument("--features", help="read token sources from this feature store (extracted from "
                                           "--checkpoint with --sequences) instead of encoding the dataset")
    parser.add_argument("--batch-size", type=int, default=32)
    add_device(parser)
    parser.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="overrides as key=value (frontend.level=feature, data.root=DIR)")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.frontend.pipeline import ExportRequest, export_frontend

    req = ExportRequest(checkpoint=args.checkpoint, out=args.out, config=args.config, overrides=args.overrides,
                        projector=args.projector, features=args.features, npy_dir=args.npy_dir, name=args.name,
                        batch_size=args.batch_size, device=args.device, overwrite=args.overwrite,
                        progress=not args.no_progress)
    path, counts = export_frontend(req)  # a wrong encoder checkpoint raises EncoderMismatchError (a ValueError)
    print(f"tokens written to {path}")
    if counts:
        print(f".npy files written under {args.npy_dir}: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0
