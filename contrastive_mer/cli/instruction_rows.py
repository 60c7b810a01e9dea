"""``cmer instruction-rows --features feats.h5 --out rows.jsonl [--label emotion] [--sentiment-label NAME]``

Instruction rows ``{id, prompt, answer}`` for ``cmer frontend-train`` from the labelled clips of a feature store
(:func:`~contrastive_mer.frontend.instructions.store_instruction_rows`): one row per clip whose label has a class
name (``--rows-per-clip`` N gives N rows with seeded phrasings, ids ``<clip>#<k>``). The prompts hold one
placeholder per source of the store: ``<m>`` per modality, and ``<fused>`` when the store has fused features,
unless ``--tokens`` gives the text.
"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_out_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="labelled feature store (cmer extract)")
    add_out_file(parser, "the instruction rows (JSONL)")
    parser.add_argument("--label", default="emotion", help="the store label the answers name (default emotion)")
    parser.add_argument("--sentiment-label", default=None, help="a second store label named in some answers")
    parser.add_argument("--tokens", default=None,
                        help="placeholder text put where {tokens} is in each prompt (default: 'Audio: <audio> ...' "
                             "for the store's modalities, then 'Overall: <fused>' when it has fused features)")
    parser.add_argument("--rows-per-clip", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the phrasing choices")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def default_tokens(modalities: list[str], fused: bool) -> str:
    """``Audio: <audio> Video: <video> ...`` for the given modalities, ``Overall: <fused>`` last when ``fused``."""
    parts = [f"{m.capitalize()}: <{m}>" for m in modalities] + (["Overall: <fused>"] if fused else [])
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from contrastive_mer.cli._common import open_store
    from contrastive_mer.errors import UserError
    from contrastive_mer.frontend.instructions import RowRecipe, store_instruction_rows, write_instructions

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    if args.rows_per_clip < 1:
        raise UserError(f"--rows-per-clip: {args.rows_per_clip} must be at least 1")
    with open_store(args.features) as store:
        tokens = args.tokens or default_tokens(list(store.modalities), bool(store.fused_modes()))
        recipe = RowRecipe(tokens=tokens, rows_per_clip=args.rows_per_clip, seed=args.seed)
        rows = store_instruction_rows(store, label=args.label, sentiment_label=args.sentiment_label, recipe=recipe)
        clips = len(store)
    if not rows:
        raise UserError(f"{args.features}: no clip has a {args.label!r} class name; nothing written")
    write_instructions(out, rows)
    print(f"{len(rows)} instruction rows for {len({r.clip for r in rows})} of {clips} clips written to {out}")
    return 0
