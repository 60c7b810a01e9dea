"""FAISS nearest-neighbour index over stored embeddings, with its row -> id map.

``EmbeddingIndex.build(vectors, ids)`` builds an exact ``flat`` index (default), an ``ivf`` or an ``hnsw`` one.
Metric ``ip`` L2-normalises vectors and queries (cosine similarity, higher is better); ``l2`` keeps them as
they are and scores are squared L2 distances (lower is better). ``save(path)`` writes the FAISS file and a JSON
sidecar ``<path>.json`` (ids, metric, kind, params, dim, the source: store path, view key and the store's content
identity, see :func:`store_identity`; and SHA-256 digests of the ids, the index file and the sidecar itself, see
:mod:`contrastive_mer.store.index_sidecar`), both by temp file + rename. ``load`` checks the digests before FAISS
reads the file, then that the file's kind, metric, count and dim are the sidecar's. :func:`check_index_source`
refuses a store the index was not built from, so ``cmer retrieve`` never answers with neighbours of another model
or other clips. Vectors holding NaN or inf are refused at build time, with their count and ids.
"""

from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.store.index_sidecar import (
    SIDECAR_VERSION,
    SidecarError,
    check_index_file,
    ids_sha256,
    parse_sidecar,
    rebuild_hint,
    seal_sidecar,
)
from contrastive_mer.store.parts import is_disk_full
from contrastive_mer.utils import l2_normalize

KINDS = ("flat", "ivf", "hnsw")
METRICS = ("ip", "l2")
__all__ = ["DEFAULT_VIEW", "EmbeddingIndex", "IndexParams", "SIDECAR_VERSION", "SidecarError", "check_index_source",
           "index_from_store", "sidecar_path", "store_identity"]
_ADD_CHUNK = 65536


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@dataclass
class IndexParams:
    """Index settings. ``nlist``/``nprobe`` for ``ivf`` (None = chosen from N), ``hnsw_m``/``ef_search`` for
    ``hnsw`` (``ef_construction`` too)."""

    kind: str = "flat"
    metric: str = "ip"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int = 32
    ef_search: int = 64
    ef_construction: int = 40

    def validate(self) -> None:
        """ValueError (one line) for an unknown kind or metric, a setting of another kind, or a count below 1."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; choose one of {list(KINDS)}")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose one of {list(METRICS)}")
        for name in ("nlist", "nprobe"):
            value = getattr(self, name)
            if value is not None and self.kind != "ivf":
                raise ValueError(f"{name} applies to an ivf index only, not to kind {self.kind!r}")
            if value is not None and not _positive(value):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("hnsw_m", "ef_search", "ef_construction"):
            if not _positive(getattr(self, name)):
                raise ValueError(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}")
        if self.nlist is not None and self.nprobe is not None and self.nprobe > self.nlist:
            raise ValueError(f"nprobe={self.nprobe} exceeds nlist={self.nlist}")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 1)


def _bad_rows(x: np.ndarray, ids: Sequence[str], what: str) -> ValueError | None:
    """A one-line error counting (and naming) the rows of ``x`` holding NaN or inf, or None when all are finite."""
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad) == 0:
        return None
    names = ", ".join(repr(str(ids[r])) for r in bad[:5]) + (", ..." if len(bad) > 5 else "")
    return ValueError(f"{len(bad)} of {len(x)} {what} hold NaN or inf (ids {names}); such vectors cannot be "
                      "indexed: the store is damaged or the model diverged")


_GPU_RESOURCES: Any = None


def _to_gpu(index: Any) -> Any:
    """Move a CPU index to GPU 0, sharing one long-lived StandardGpuResources (it must outlive the index)."""
    global _GPU_RESOURCES
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES, 0, index)


def _resolve_gpu(use_gpu: bool | str) -> bool:
    if use_gpu == "auto":
        return gpu_available()
    if use_gpu and not gpu_available():
        raise RuntimeError("a GPU index was requested but this faiss build has no GPU support or sees no GPU; "
                           "install faiss-gpu or use use_gpu='auto'/False")
    return bool(use_gpu)


@dataclass
class EmbeddingIndex:
    """A FAISS index plus the id of each row. Build with :meth:`build`, reopen with :meth:`load`."""

    index: Any
    ids: list[str]
    params: IndexParams
    dim: int
    source: dict[str, Any] = field(default_factory=dict)
    on_gpu: bool = False

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[str], kind: str = "flat", metric: str = "ip",
              *, nlist: int | None = None, nprobe: int | None = None, hnsw_m: int = 32, ef_search: int = 64,
              use_gpu: bool | str = "auto", source: dict[str, Any] | None = None,
              progress: bool = False, seed: int = 0) -> "EmbeddingIndex":
        """Index ``vectors`` (N, D) whose rows are named ``ids``."""
        params = IndexParams(kind, metric, nlist, nprobe, hnsw_m, ef_search)
        params.validate()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = [str(i) for i in ids]
        if x.ndim != 2 or x.shape[0] != len(ids):
            raise ValueError(f"vectors must be (N, D) with N = len(ids) = {len(ids)}, got {x.shape}")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        if len(ids) == 0:
            raise ValueError("cannot build an index from zero vectors")
        err = _bad_rows(x, ids, "vectors")
        if err is not None:
            raise err
        if metric == "ip":
            x = l2_normalize(x)
        n, d = x.shape
        fmetric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
        index: Any  # a faiss index of the kind asked for
        if kind == "flat":
            index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
        elif kind == "ivf":
            params.nlist = params.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            if params.nlist > n:
                raise ValueError(f"nlist={params.nlist} exceeds the number of vectors ({n})")
            params.nprobe = min(params.nprobe or max(1, params.nlist // 8), params.nlist)
            quantizer = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
            index = faiss.IndexIVFFlat(quantizer, d, params.nlist, fmetric)
            index.cp.seed = seed
        else:
            index = faiss.IndexHNSWFlat(d, params.hnsw_m, fmetric)
            index.hnsw.efConstruction = params.ef_construction
        on_gpu = _resolve_gpu(use_gpu) and kind != "hnsw"  # faiss has no GPU HNSW
        if on_gpu:
            index = _to_gpu(index)
        if kind == "ivf":
            index.train(x)
        starts = range(0, n, _ADD_CHUNK)
        if progress and n > _ADD_CHUNK:
            from tqdm import tqdm
            starts = tqdm(starts, desc="indexing", unit="chunk")
        for s in starts:
            index.add(x[s:s + _ADD_CHUNK])
        out = cls(index, ids, params, d, dict(source or {}), on_gpu)
        out._apply_search_params()
        return out

    def _apply_search_params(self) -> None:
        if self.params.kind == "ivf":
            self.index.nprobe = self.params.nprobe
        elif self.params.kind == "hnsw":
            self.index.hnsw.efSearch = self.params.ef_search

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` neighbours of each query (Q, D) or (D,).

        Returns ``scores`` (Q, k') with k' = min(k, N): cosine similarity for ``ip`` (descending), squared
        L2 distance for ``l2`` (ascending); and ``ids`` (Q lists). Where an approximate index finds fewer
        than k' hits, the missing scores are NaN and the id list is shorter.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}), got {np.shape(queries)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.params.metric == "ip":
            q = l2_normalize(q)
        k = min(int(k), len(self.ids))
        scores, rows = self.index.search(q, k)
        scores = scores.astype(np.float32)
        scores[rows < 0] = np.nan
        return scores, [[self.ids[r] for r in row if r >= 0] for row in rows]

    # -------------------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the FAISS index to ``path`` and its sealed sidecar to ``<path>.json`` (each by temp + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cpu = faiss.index_gpu_to_cpu(self.index) if self.on_gpu else self.index
        tmp_index, side = path.with_name(f".{path.name}.tmp"), sidecar_path(path)
        tmp_side = side.with_name(f".{side.name}.tmp")
        try:
            try:
                faiss.write_index(cpu, str(tmp_index))
            except (RuntimeError, OSError) as err:  # FAISS reports a short write as a RuntimeError
                if is_disk_full(err):
                    raise OSError(errno.ENOSPC, f"No space left on device while writing the index {path}; "
                                  "nothing was written (an older index of that name is kept)", str(path)) from None
                raise
            meta = seal_sidecar({"kind": self.params.kind, "metric": self.params.metric,
                                 "params": dict(self.params.__dict__), "dim": self.dim, "count": len(self.ids),
                                 "source": self.source, "ids": self.ids}, tmp_index)
            tmp_side.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp_index, path)
            os.replace(tmp_side, side)
        finally:
            tmp_index.unlink(missing_ok=True)
            tmp_side.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path, use_gpu: bool | str = "auto") -> "EmbeddingIndex":
        """Reopen an index written by :meth:`save`, after checking the sidecar's digests and the file against it.

        Raises ``FileNotFoundError`` for a missing file and :class:`SidecarError` (a one-line ``ValueError``) for
        anything that does not check out.
        """
        path = Path(path)
        side = sidecar_path(path)
        for p in (path, side):
            if not p.exists():
                raise FileNotFoundError(f"index file {p} does not exist")
        meta = parse_sidecar(side, path)
        rebuild = rebuild_hint(meta, path)
        try:
            params = IndexParams(**meta["params"])
            params.validate()
        except (TypeError, ValueError) as e:
            raise SidecarError(f"{side} holds invalid index settings ({e}); {rebuild}") from None
        if (meta["kind"], meta["metric"]) != (params.kind, params.metric):
            raise SidecarError(f"{side} names kind/metric {meta['kind']}/{meta['metric']} but its settings say "
                               f"{params.kind}/{params.metric}; {rebuild}")
        check_index_file(path, meta, rebuild)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise SidecarError(f"FAISS cannot read {path} ({str(e).strip().splitlines()[-1]}); {rebuild}") from None
        ids, dim = list(meta["ids"]), int(meta["dim"])
        _check_faiss_index(index, params, len(ids), dim, where=f"{path} (sidecar {side.name})", rebuild=rebuild)
        on_gpu = _resolve_gpu(use_gpu) and params.kind != "hnsw"
        if on_gpu:
            index = _to_gpu(index)
        out = cls(index, ids, params, dim, meta.get("source", {}), on_gpu)
        out._apply_search_params()
        return out


_FAISS_KINDS = {"IndexFlatIP": "flat", "IndexFlatL2": "flat", "IndexFlat": "flat", "IndexIVFFlat": "ivf",
                "IndexHNSWFlat": "hnsw"}


def _check_faiss_index(index: Any, params: IndexParams, count: int, dim: int, *, where: str, rebuild: str) -> None:
    """The FAISS index read from disk is what its sidecar says: kind, metric, vector count, dim (and ivf lists)."""
    concrete: Any = faiss.downcast_index(index)
    kind = _FAISS_KINDS.get(type(concrete).__name__, type(index).__name__)
    metric = {faiss.METRIC_INNER_PRODUCT: "ip", faiss.METRIC_L2: "l2"}.get(index.metric_type, str(index.metric_type))
    found = {"kind": kind, "metric": metric, "count": int(index.ntotal), "dim": int(index.d)}
    said = {"kind": params.kind, "metric": params.metric, "count": count, "dim": dim}
    if kind == "ivf" == params.kind:
        found["nlist"], said["nlist"] = int(concrete.nlist), params.nlist
    diff = [f"{k} {found[k]} (sidecar: {said[k]})" for k in said if found[k] != said[k]]
    if diff:
        raise SidecarError(f"{where} does not match its sidecar: the file has {', '.join(diff)}; {rebuild}")


def sidecar_path(path: str | Path) -> Path:
    """``x.faiss`` -> ``x.faiss.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


# ----------------------------------------------------------------------------------------- from a store
#: what ``cmer index`` and :func:`index_from_store` index unless told: the mean of the L2-normalised
#: projections, i.e. the shared embedding space the contrastive loss trains
DEFAULT_VIEW = "fused/mean"


def index_from_store(store: FeatureStore, key: str = DEFAULT_VIEW, *, drop_nonfinite: bool = False,
                     **kwargs: Any) -> EmbeddingIndex:
    """Index the usable rows of the view ``key`` of ``store``.

    ``key`` is named as :meth:`FeatureStore.view` says: a modality (its ``features/<m>``, as the probes read
    it), ``projections/<m>``, ``fused/<mode>``, ``fused`` (the only fused mode), ``features/<m>``.
    A present row holding NaN or inf is a ``ValueError`` counting and naming them, unless ``drop_nonfinite``:
    then they are left out (as the probes leave them out) and their count is recorded in the source as
    ``dropped_nonfinite``. ``kwargs`` go to :meth:`EmbeddingIndex.build`.
    """
    view = store.view(key)
    present = _present_rows(store, view.key)
    err = _bad_rows(view.vectors[present], store.ids[present], f"present rows of {view.key} in {store.path}")
    if err is not None and not drop_nonfinite:
        raise ValueError(f"{err} (`cmer index --drop-nonfinite` leaves them out)")
    rows = view.rows
    if len(rows) == 0:
        raise ValueError(f"{store.path}: no row has a usable {view.key}")
    source = {"store": str(store.path), "key": view.key, **store_identity(store)}
    if drop_nonfinite:
        source["dropped_nonfinite"] = int(present.sum() - len(rows))
    return EmbeddingIndex.build(view.vectors[rows], store.ids[rows].tolist(), source=source, **kwargs)


def _present_rows(store: FeatureStore, key: str) -> np.ndarray:
    """Rows where the view ``key`` holds data: its modality is present (a fused key: any modality)."""
    group, _, name = key.partition("/")
    mods = list(store.modalities) if group == "fused" else [name]
    present = np.zeros(len(store.ids), dtype=bool)
    for m in mods:
        present |= np.asarray(store.present(m), dtype=bool)
    return present


def store_identity(store: FeatureStore) -> dict[str, Any]:
    """What makes a store's content: a SHA-256 of its ids in row order, their count, and the checkpoint hash.

    Two extractions of the same clips with the same checkpoint share it (their vectors agree up to float noise);
    another model or another clip list does not.
    """
    return {"ids_sha256": ids_sha256(store.ids.tolist()), "count": len(store.ids),
            "checkpoint_sha256": str(store.attrs.get("checkpoint_sha256", "") or "")}


def _short(sha: str) -> str:
    return sha[:12] if sha else "none recorded"


def check_index_source(index: EmbeddingIndex, store: FeatureStore, index_path: str | Path = "the index") -> None:
    """Raise ValueError (one line) unless ``index`` was built from the content of ``store``.

    Compares the identity recorded at build time (:func:`store_identity`) and requires the indexed view to exist in
    the store with the index's dimension; every id the index names must be one the store holds (all an index
    built without a source can be checked by).
    """
    src = index.source
    rebuild = f"rebuild it with `cmer index --features {store.path} --modality {src.get('key') or DEFAULT_VIEW}`"
    if "ids_sha256" in src:
        mine = store_identity(store)
        if src["ids_sha256"] != mine["ids_sha256"] or src.get("checkpoint_sha256", "") != mine["checkpoint_sha256"]:
            raise ValueError(
                f"{index_path} was built from another store ({src.get('store', '?')}: {src.get('count', '?')} clips, "
                f"checkpoint {_short(src.get('checkpoint_sha256', ''))}), not from {store.path} "
                f"({mine['count']} clips, checkpoint {_short(mine['checkpoint_sha256'])}); {rebuild}")
    known = set(store.ids.tolist())
    missing = [i for i in index.ids if i not in known]
    if missing:
        raise ValueError(f"{index_path} names {len(missing)} id(s) that {store.path} does not hold "
                         f"(first: {missing[0]!r}), so it was built from another store; {rebuild}")
    key = src.get("key")
    if key:
        try:
            dim = store.view_dim(key)
        except KeyError as e:
            raise ValueError(f"{index_path} indexes {key!r}, which {store.path} does not hold; {rebuild}") from e
        if dim != index.dim:
            raise ValueError(f"{index_path} holds {key} vectors of dim {index.dim} but {store.path} has dim {dim}; "
                             f"{rebuild}")
