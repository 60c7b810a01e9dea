"""Cross-modal retrieval metrics: for every ordered modality pair ``a-b``, query with row i of ``a`` and look
for row i of ``b`` among all rows of ``b`` (rows where both modalities are present). Pairs are spelled as the
losses' metrics spell them, the query modality first: ``"audio-video"`` queries audio and searches video.

The rank of the correct item is the number of gallery items whose cosine similarity is at least the correct
item's, itself included: ties count against the query (pessimistic rank), so fully collapsed embeddings (every
similarity equal) rank every partner last, R@1 = 0 and median rank N, instead of scoring a perfect 1. Similarities
are computed in float64 and values within ``TIE_TOLERANCE`` of the correct item's count as ties (identical gallery
rows must tie whatever the matmul's summation order). R@k is the percentage of queries with rank <= k.
Similarities are computed in query blocks so memory stays bounded by ``max_block_elements`` values.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from contrastive_mer.utils import l2_normalize, to_numpy

__all__ = ["cross_modal_retrieval", "retrieval_ranks", "format_table"]

#: cosine similarities closer than this to the correct item's are ties (counted against the query)
TIE_TOLERANCE = 1e-9


def retrieval_ranks(queries: np.ndarray, gallery: np.ndarray, max_block_elements: int = 1 << 24) -> np.ndarray:
    """1-based pessimistic rank of ``gallery[i]`` for ``queries[i]`` under cosine similarity (ties with it count as
    ranked above it); (N,) int64."""
    q, g = _unit(queries), _unit(gallery)
    if q.shape != g.shape:
        raise ValueError(f"queries {q.shape} and gallery {g.shape} must have the same shape")
    n = len(q)
    ranks = np.empty(n, dtype=np.int64)
    block = max(1, max_block_elements // max(1, n))
    for s in range(0, n, block):
        sims = q[s:s + block] @ g.T  # (b, N)
        rows = np.arange(len(sims))
        target = sims[rows, s + rows]  # the correct item's score, from the same matmul (no float mismatch)
        ranks[s:s + block] = (sims >= target[:, None] - TIE_TOLERANCE).sum(axis=1)
    return ranks


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64, so that ties are exact (all-zero rows stay zero)."""
    x = to_numpy(x)
    if x.ndim != 2:
        raise ValueError(f"expected (N, D) embeddings, got shape {x.shape}")
    return l2_normalize(x, dtype=np.float64)


def cross_modal_retrieval(projections: Mapping[str, Any], present: Mapping[str, Any] | None = None,
                          *, ks: Sequence[int] = (1, 5, 10), modalities: Sequence[str] | None = None,
                          max_block_elements: int = 1 << 24) -> dict[str, dict[str, float]]:
    """R@k (percent), median and mean rank and count for every ordered pair ``"a-b"`` (query modality first).

    Args:
        projections: modality -> (N, P) embeddings (rows aligned across modalities).
        present: modality -> (N,) bool; None means every row is present.
        ks: the k of R@k.
        modalities: which modalities and in what order (default: the keys of ``projections``).
    Returns:
        ``{"a-b": {"R@1": .., "R@5": .., "median_rank": .., "mean_rank": .., "count": n}}``; with no common
        row, the metrics are NaN and ``count`` is 0.
    """
    order = list(modalities) if modalities is not None else list(projections)
    arrays = {m: to_numpy(projections[m]) for m in order}
    n = {len(a) for a in arrays.values()}
    if len(n) > 1:
        raise ValueError(f"projections have different row counts: { {m: len(a) for m, a in arrays.items()} }")
    masks = {}
    for m in order:
        p = np.ones(len(arrays[m]), dtype=bool) if present is None else to_numpy(present[m]).astype(bool)
        if p.shape != (len(arrays[m]),):
            raise ValueError(f"present[{m!r}] has shape {p.shape}, expected ({len(arrays[m])},)")
        masks[m] = p
    out: dict[str, dict[str, float]] = {}
    for a in order:
        for b in order:
            if a == b:
                continue
            rows = np.flatnonzero(masks[a] & masks[b])
            res: dict[str, float] = {}
            if len(rows) == 0:
                res.update({f"R@{k}": float("nan") for k in ks})
                res.update(median_rank=float("nan"), mean_rank=float("nan"), count=0)
            else:
                r = retrieval_ranks(arrays[a][rows], arrays[b][rows], max_block_elements)
                res.update({f"R@{k}": float(100.0 * np.mean(r <= k)) for k in ks})
                res.update(median_rank=float(np.median(r)), mean_rank=float(np.mean(r)), count=int(len(rows)))
            out[f"{a}-{b}"] = res
    return out


def format_table(results: Mapping[str, Mapping[str, float]], ks: Sequence[int] = (1, 5, 10)) -> str:
    """A plain-text table: pair, count, R@k..., median rank."""
    header = ["pair", "count", *[f"R@{k}" for k in ks], "MedR"]
    rows = [header]
    for pair, r in results.items():
        rows.append([pair, str(int(r["count"])), *[f"{r[f'R@{k}']:.1f}" for k in ks], f"{r['median_rank']:.1f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
