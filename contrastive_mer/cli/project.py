"""``cmer project``: TensorBoard embedding-projector files for stored features.

    cmer project --features feats.h5 [--view fused] --output DIR [--max-rows N]
    tensorboard --logdir DIR    # the Projector tab: PCA / t-SNE / UMAP, colour and search by label or speaker
"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_output_dir, comma_list, open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="feature store (.h5) written by `cmer extract`")
    parser.add_argument("--view", default=None,
                        help="comma-separated views: modality names (their features), projections/<m>, fused "
                             "(every fused mode) or fused/<mode> (default: every modality and fused mode)")
    add_output_dir(parser, "projector_config.pbtxt and one <view>/tensors.tsv + metadata.tsv per view",
                   required=True)
    parser.add_argument("--max-rows", type=int, default=None,
                        help="write at most the first N usable rows of each view (the browser slows past ~50k)")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.errors import UserError
    from contrastive_mer.store.tensorboard import write_projector

    if args.max_rows is not None and args.max_rows < 1:
        raise UserError(f"--max-rows must be >= 1, got {args.max_rows}")
    with open_store(args.features) as store:
        written = write_projector(store, comma_list(args.view, option="--view") or None, args.output,
                                  args.max_rows)
    for view in written:
        print(f"{view.key}: {view.rows} rows -> {view.folder}")
    print(f"wrote {args.output}/projector_config.pbtxt; view with: tensorboard --logdir {args.output} (Projector tab)")
    return 0
