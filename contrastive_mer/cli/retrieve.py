"""``cmer retrieve``: nearest neighbours of a stored clip or of vectors, or the cross-modal retrieval table.

    cmer retrieve --features feats.h5 --index feats.faiss --query ID [--k 10] [--json out.json]
    cmer retrieve --features feats.h5 --index feats.faiss --vector-file v.npy [--k 10]
    cmer retrieve --features feats.h5 --cross-modal [--ks 1,5,10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from contrastive_mer.cli._common import comma_list, open_store
from contrastive_mer.data.safe_files import BadFileError, load_npy
from contrastive_mer.errors import UserError
from contrastive_mer.evaluation.retrieval import cross_modal_retrieval, format_table
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.store.index import EmbeddingIndex, check_index_source

#: cap of a ``--vector-file`` (256 MiB: 65,536 queries of dim 1,024 in float32)
MAX_QUERY_BYTES = 256 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="feature store (.h5)")
    parser.add_argument("--index", help="index written by `cmer index` from this same store (needed for "
                        "--query/--vector-file; an index of another store is refused)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="id of a stored clip to use as the query")
    what.add_argument("--vector-file", help=".npy file with one (D,) or several (Q, D) query vectors")
    what.add_argument("--cross-modal", action="store_true", help="all-pairs cross-modal R@k and median rank")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--ks", default="1,5,10", help="--cross-modal: comma-separated k of R@k")
    parser.add_argument("--modalities", default=None, help="--cross-modal: comma-separated modalities")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")


def _label_values(store: FeatureStore, row: int) -> dict[str, Any]:
    """Readable labels of one row (class names for categorical and multi-label labels)."""
    out: dict[str, Any] = {}
    for name in store.label_names():
        value, names = store.row(f"labels/{name}", row), store.class_names(name)
        if np.ndim(value) == 1:
            out[name] = ([n for n, v in zip(names, value) if v > 0] if names
                         else [None if math.isnan(v) else float(v) for v in value])
        elif names is not None:
            out[name] = names[int(value)] if 0 <= int(value) < len(names) else None
        else:
            out[name] = None if math.isnan(float(value)) else float(value)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_fmt(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def _table(hits: list[dict[str, Any]], label_names: list[str]) -> str:
    header = ["rank", "id", "score", *label_names]
    rows = [header] + [[str(h["rank"]), h["id"], f"{h['score']:.4f}", *[_fmt(h["labels"].get(n)) for n in label_names]]
                       for h in hits]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _queries(args: argparse.Namespace, store: FeatureStore,
             index: EmbeddingIndex) -> list[tuple[str, np.ndarray, int | None]]:
    """(name, vector, store row or None) for each query."""
    if args.query is not None:
        key = index.source.get("key")
        if not key:
            raise UserError(f"{args.index} does not record which store key it indexes; use --vector-file")
        row = store.index_of(args.query)
        key, vector, usable = store.view_row(key, row)
        if not usable:
            raise UserError(f"clip {args.query!r} has no usable {key} vector in {store.path} "
                            "(its modality is absent or the values are not finite)")
        return [(args.query, vector.astype(np.float32), row)]
    path = Path(args.vector_file)
    try:
        vecs = load_npy(path, MAX_QUERY_BYTES)
    except BadFileError as e:
        raise UserError(f"cannot read query vectors: {e}") from None
    if vecs.dtype.kind not in "fiu":
        raise UserError(f"{path}: query vectors must be real numbers, got dtype {vecs.dtype}")
    if vecs.ndim not in (1, 2) or vecs.shape[-1] != index.dim or vecs.size == 0:
        raise UserError(f"{path}: expected vectors of dim {index.dim} (shape (D,) or (Q, D)), got {vecs.shape}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused below
        vecs = np.atleast_2d(vecs).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(vecs).all(axis=1))
    if len(bad):
        raise UserError(f"{path}: {len(bad)} of {len(vecs)} query vectors hold NaN or inf (rows "
                        f"{', '.join(map(str, bad[:5].tolist()))}{', ...' if len(bad) > 5 else ''})")
    return [(f"{path.name}[{i}]", v.astype(np.float32), None) for i, v in enumerate(vecs)]


def _neighbours(args: argparse.Namespace) -> dict[str, Any]:
    if not args.index:
        raise UserError("--index is required with --query/--vector-file")
    if args.k < 1:
        raise UserError(f"--k must be >= 1, got {args.k}")
    try:
        index = EmbeddingIndex.load(args.index)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        raise UserError(str(e)) from e
    result: dict[str, Any] = {"index": str(args.index), "key": index.source.get("key"),
                              "metric": index.params.metric, "queries": []}
    with open_store(args.features) as store:
        try:
            check_index_source(index, store, args.index)
        except ValueError as e:
            raise UserError(str(e)) from e
        rows = {sid: i for i, sid in enumerate(store.ids.tolist())}
        label_names = store.label_names()
        for name, vec, row in _queries(args, store, index):
            scores, ids = index.search(vec, args.k + (row is not None))
            hits = [(i, float(s)) for i, s in zip(ids[0], scores[0]) if i != name or row is None][:args.k]
            entry: dict[str, Any] = {"query": name,
                                     "labels": _label_values(store, row) if row is not None else {},
                     "results": [{"rank": r + 1, "id": i, "score": s,
                                  "labels": _label_values(store, rows[i]) if i in rows else {}}
                                 for r, (i, s) in enumerate(hits)]}
            result["queries"].append(entry)
            labels = ", ".join(f"{k}={_fmt(v)}" for k, v in entry["labels"].items())
            print(f"query {name}" + (f" ({labels})" if labels else "") +
                  f" -> top {len(hits)} of {result['key'] or 'index'} ({index.params.metric})")
            print(_table(entry["results"], label_names))
    return result


def _cross_modal(args: argparse.Namespace) -> dict[str, Any]:
    ks = comma_list(args.ks, int, "--ks")
    with open_store(args.features) as store:
        mods = comma_list(args.modalities, option="--modalities") or store.modalities
        views = {m: store.view(f"projections/{m}") for m in mods}
    proj = {m: v.vectors for m, v in views.items()}
    present = {m: v.usable for m, v in views.items()}
    if len(mods) < 2:
        raise UserError(f"cross-modal retrieval needs at least two modalities, got {mods}")
    results = cross_modal_retrieval(proj, present, ks=ks, modalities=mods)
    print(format_table(results, ks))
    return {"features": str(args.features), "ks": ks, "pairs": results}


def run(args: argparse.Namespace) -> int:
    result = _cross_modal(args) if args.cross_modal else _neighbours(args)
    if args.json:
        from contrastive_mer.utils import write_text_atomic

        out = write_text_atomic(args.json, json.dumps(result, indent=2, allow_nan=True))
        print(f"wrote {out}")
    return 0
