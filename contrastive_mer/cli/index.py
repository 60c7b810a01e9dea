"""``cmer index``: build a FAISS index over one kind of vector of a feature store.

    cmer index --features feats.h5 [--modality fused/mean] --out feats.faiss [--kind flat|ivf|hnsw]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contrastive_mer.cli._common import open_store
from contrastive_mer.errors import UserError
from contrastive_mer.store.index import DEFAULT_VIEW, KINDS, METRICS, index_from_store, sidecar_path

_GPU = {"auto": "auto", "yes": True, "no": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="feature store (.h5) written by `cmer extract`")
    parser.add_argument("--modality", default=DEFAULT_VIEW,
                        help="the view to index: a modality (its features/<m>, as `cmer probe` reads it), "
                             "projections/<m>, fused/<mode>, fused (the only fused mode) or features/<m> "
                             f"(default: {DEFAULT_VIEW}, the mean of the projections)")
    parser.add_argument("--out", required=True, help="index file to write (a <out>.json sidecar goes beside it)")
    parser.add_argument("--kind", choices=KINDS, default="flat", help="exact flat (default), ivf or hnsw")
    parser.add_argument("--metric", choices=METRICS, default="ip",
                        help="ip: cosine on L2-normalised vectors (default); l2: Euclidean")
    parser.add_argument("--nlist", type=int, default=None, help="ivf: number of lists (default: from N)")
    parser.add_argument("--nprobe", type=int, default=None, help="ivf: lists visited per query")
    parser.add_argument("--hnsw-m", type=int, default=32, help="hnsw: neighbours per node")
    parser.add_argument("--ef-search", type=int, default=64, help="hnsw: search breadth")
    parser.add_argument("--drop-nonfinite", action="store_true",
                        help="leave out rows holding NaN or inf (counted in the output) instead of refusing the store")
    parser.add_argument("--gpu", choices=sorted(_GPU), default="auto", help="use a GPU index (auto: when available)")


def run(args: argparse.Namespace) -> int:
    with open_store(args.features) as store:
        try:
            index = index_from_store(store, args.modality, kind=args.kind, metric=args.metric, nlist=args.nlist,
                                     nprobe=args.nprobe, hnsw_m=args.hnsw_m, ef_search=args.ef_search,
                                     use_gpu=_GPU[args.gpu], progress=True, drop_nonfinite=args.drop_nonfinite)
        except RuntimeError as e:
            raise UserError(str(e)) from e
    out = index.save(Path(args.out))
    where = "GPU" if index.on_gpu else "CPU"
    dropped = index.source.get("dropped_nonfinite")
    if dropped:
        print(f"left out {dropped} row(s) holding NaN or inf (--drop-nonfinite)")
    print(f"indexed {len(index)} vectors of {index.source['key']} (dim {index.dim}, {args.kind}, {args.metric}, "
          f"{where}) -> {out} (+ {sidecar_path(out).name})")
    return 0
