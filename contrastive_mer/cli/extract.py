"""``cmer extract --checkpoint CKPT [--config CFG] [key=value ...] --out feats.h5``

Sharded: ``--shard-index I --num-shards N`` (or ``--shard-index auto`` under torchrun) writes
``feats.shard-I-of-N.h5``; ``cmer extract --merge-shards feats.h5`` then joins the shards into ``feats.h5``.
"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_device, add_out_file, comma_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="a checkpoint written by cmer pretrain (required unless merging)")
    parser.add_argument("--config", help="experiment YAML for the data section (default: the checkpoint's)")
    add_out_file(parser, "the HDF5 feature store to write (e.g. feats.h5)", required=False)
    parser.add_argument("--random-init", action="store_true",
                        help="encode with the checkpoint's architecture untrained (seeded by the config's seed, as "
                             "cmer evaluate's random-init column); the store's provenance says untrained")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--fusion", default="concat,mean",
                        help="comma-separated fusion modes to store: concat, mean, weighted (default concat,mean)")
    parser.add_argument("--fusion-weights", metavar="M=W,...",
                        help="weights of the weighted fusion, one per modality (e.g. audio=2,video=1,text=1); "
                             "adds weighted to --fusion")
    parser.add_argument("--sequences", default="", help="modalities whose frame-level sequences are stored")
    parser.add_argument("--sequence-dtype", default="float16", choices=["float16", "float32"])
    add_device(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="start again instead of resuming (with --merge-shards: replace an existing output)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--shard-index", metavar="I|auto",
                        help="extract only shard I (clips at positions I, I+N, ... in id order) into "
                             "OUT_STEM.shard-I-of-N.h5; 'auto' takes RANK and WORLD_SIZE from torchrun")
    parser.add_argument("--num-shards", type=int, metavar="N", help="number of shards (with --shard-index I)")
    parser.add_argument("--merge-shards", metavar="OUT",
                        help="merge the complete shards OUT_STEM.shard-*-of-N.h5 into OUT, ordered by id")
    parser.add_argument("--remove-shards", action="store_true", help="with --merge-shards: delete them afterwards")
    parser.add_argument("overrides", nargs="*", help="data overrides as key=value (e.g. data.root=DIR)")


def _merge(args: argparse.Namespace) -> int:
    from contrastive_mer.errors import UserError
    from contrastive_mer.store.hdf5 import IncompleteStoreError
    from contrastive_mer.store.lock import acquire
    from contrastive_mer.store.merge import find_shards, merge_shards

    if args.checkpoint or args.out or args.shard_index is not None or args.overrides or args.random_init:
        raise UserError("--merge-shards OUT takes no --checkpoint, --out, --shard-index, --random-init or overrides")
    lock = acquire(args.merge_shards, "feature store")  # the store writer's lock: one writer of OUT at a time
    try:
        path = merge_shards(find_shards(args.merge_shards), args.merge_shards, overwrite=args.overwrite,
                            remove_shards=args.remove_shards)
    except (IncompleteStoreError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise UserError(str(err)) from None
    finally:
        lock.release()
    print(f"shards merged into {path}")
    return 0


def _store_path(args: argparse.Namespace) -> str:
    """The store this run writes (``OUT`` or its shard's path), worked out without importing torch; settings
    that do not resolve give ``OUT`` (they are refused later with their own message)."""
    from contrastive_mer.distributed import launched_rank, launched_world
    from contrastive_mer.store.merge import shard_store_path

    index, count = args.shard_index, args.num_shards
    if index is None:
        return str(args.out)
    if str(index).strip().lower() == "auto":
        index, count = launched_rank(), count if count is not None else launched_world()
    try:
        index, count = int(index), int(count)
    except (TypeError, ValueError):
        return str(args.out)
    return str(shard_store_path(args.out, index, count)) if 0 <= index < count else str(args.out)


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.errors import UserError
    from contrastive_mer.store.lock import acquire

    if args.merge_shards:
        return _merge(args)
    if not args.checkpoint or not args.out:
        raise UserError("--checkpoint and --out are required (or --merge-shards OUT)")
    # the store writer's lock, taken before torch, the model and the data load: a second writer of the same
    # store fails in about a second instead of after the whole start-up; the writer takes it over
    from contrastive_mer.config import precheck

    if any(o.startswith("model.") for o in args.overrides):
        raise UserError("model.* cannot be overridden: the checkpoint defines the model")
    precheck(args.config, args.overrides, settings=False)  # misspelt keys and inf before torch is imported
    lock = acquire(_store_path(args), "feature store")
    try:
        return _extract(args)
    finally:
        lock.release()  # nothing when the writer took it over (it releases it itself)


def _extract(args: argparse.Namespace) -> int:
    from contrastive_mer.errors import UserError
    from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint
    from contrastive_mer.extract.shards import resolve_shard
    from contrastive_mer.fusion import parse_weights

    shard_index = args.shard_index
    if shard_index is not None and shard_index != "auto":
        try:
            shard_index = int(shard_index)
        except ValueError:
            raise UserError(f"--shard-index must be an integer or 'auto', got {shard_index!r}") from None
    resolve_shard(shard_index, args.num_shards)  # bad values fail here, before the checkpoint is loaded
    modes = comma_list(args.fusion, option="--fusion")
    weights = None
    if args.fusion_weights is not None:
        try:
            weights = parse_weights(args.fusion_weights)
        except ValueError as e:
            raise UserError(f"--fusion-weights: {e}") from None
        modes += [] if "weighted" in modes else ["weighted"]
    options = ExtractOptions(batch_size=args.batch_size, num_workers=args.num_workers,
                             fusion_modes=modes, fusion_weights=weights,
                             sequences=comma_list(args.sequences, option="--sequences"),
                             sequence_dtype=args.sequence_dtype, device=args.device, overwrite=args.overwrite,
                             progress=not args.no_progress, shard_index=shard_index, num_shards=args.num_shards)
    path = extract_from_checkpoint(args.checkpoint, args.out, args.config, args.overrides, options=options,
                                   random_init=args.random_init)
    print(f"features written to {path}")
    return 0
