"""Late fusion of per-modality outputs (inference only; nothing here is trained).

Modes:

* ``concat`` (the paper's default): the pre-head features of every modality concatenated in a fixed modality
  order; an absent modality contributes zeros. ``append_mask=True`` appends one 0/1 column per modality so a
  downstream classifier can tell "absent" from "all-zero".
* ``mean``: the mean of the L2-normalised projections over the modalities present in that row (not
  renormalised).
* ``weighted``: a weighted sum of the L2-normalised projections with per-modality weights the caller gives
  (``cmer extract --fusion-weights audio=2,video=1,text=1``), renormalised over the modalities present in that
  row (so an absent modality's weight is shared out among the others). Without weights it would equal
  ``mean``, so it requires them.

A row where no modality is present fuses to all zeros in every mode (plus zero mask columns).
Inputs may be torch tensors or numpy arrays; the output has the type of the inputs.

Each mode is a :class:`FusionMode` in :data:`FUSION_MODES`: which inputs it reads (``features`` or
``projections``), one function that fuses the checked ``(B, D)`` float32 inputs given the ``(B, M)`` presence mask,
and its output width. :func:`fuse` checks the inputs and looks the mode up; a new mode is one registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from contrastive_mer.registry import Registry


@dataclass
class FusionConfig:
    """How to fuse: ``mode``, per-modality ``weights`` (``weighted`` only), ``append_mask`` (``concat`` only)."""

    mode: str = "concat"
    weights: dict[str, float] | None = None
    append_mask: bool = False

    def apply(self, features: Mapping[str, Any], projections: Mapping[str, Any], present: Mapping[str, Any] | None,
              modalities: Sequence[str] | None = None) -> Any:
        return fuse(features, projections, present, self.mode, weights=self.weights, modalities=modalities,
                    append_mask=self.append_mask)

    def dim(self, feature_dims: Mapping[str, int], projection_dim: int,
            modalities: Sequence[str] | None = None) -> int:
        return fused_dim(self.mode, feature_dims, projection_dim, append_mask=self.append_mask, modalities=modalities)


def parse_weights(text: str) -> dict[str, float]:
    """``"audio=2,video=1"`` -> ``{"audio": 2.0, "video": 1.0}``; ``ValueError`` naming a malformed item."""
    weights: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"fusion weights: {item!r} is not modality=weight (e.g. audio=0.5)") from None
    return weights


def check_weights(weights: Mapping[str, float] | None, modalities: Sequence[str]) -> list[float]:
    """The weights of ``modalities`` in that order; errors name a missing modality or a bad weight."""
    if not weights:
        raise ValueError("fusion mode 'weighted' needs a weight per modality (modality -> weight); "
                         "with equal weights it is 'mean'")
    missing = [m for m in modalities if m not in weights]
    if missing:
        raise KeyError(f"fusion: no weight for modalities {missing}; got {sorted(weights)}")
    values = [float(weights[m]) for m in modalities]
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"fusion: weights must be finite and non-negative, got {dict(weights)}")
    return values


def _order(modalities: Sequence[str] | None, available: Mapping[str, Any]) -> list[str]:
    """The fixed modality order: the one given, else sorted names."""
    order = list(modalities) if modalities is not None else sorted(available)
    missing = [m for m in order if m not in available]
    if missing:
        raise KeyError(f"fusion: no input for modalities {missing}; got {sorted(available)}")
    if not order:
        raise ValueError("fusion: no modalities to fuse")
    return order


class FuseFn(Protocol):
    """A fusion mode's ``fuse`` function; the ``append_mask`` flag is passed by keyword."""

    def __call__(self, xs: list[torch.Tensor], mask: torch.Tensor, order: list[str],
                 weights: Mapping[str, float] | None, *, append_mask: bool) -> torch.Tensor: ...


@dataclass(frozen=True)
class FusionMode:
    """One fusion mode.

    ``source``: ``"features"`` (pre-head, ``(B, D_m)``) or ``"projections"`` (``(B, P)``, one width);
    ``fuse(xs, mask, order, weights, *, append_mask)``: the fused ``(B, D_f)`` tensor of the float32 inputs ``xs``
    (in modality ``order``) and the ``(B, M)`` float presence ``mask``;
    ``dim(dims, projection_dim, append_mask)``: ``D_f`` from the source widths ``dims`` (in modality order).
    """

    source: str
    fuse: FuseFn
    dim: Callable[[list[int], int, bool], int]


#: mode name -> :class:`FusionMode`
FUSION_MODES: Registry[FusionMode] = Registry("fusion mode")


def _concat(xs: list[torch.Tensor], mask: torch.Tensor, order: list[str], weights: Mapping[str, float] | None,
            *, append_mask: bool) -> torch.Tensor:
    keep = mask.bool()  # where(), not multiplication: an absent row may hold NaN
    out = torch.cat([torch.where(keep[:, i:i + 1], x, 0.0) for i, x in enumerate(xs)], dim=1)
    return torch.cat([out, mask], dim=1) if append_mask else out


def _weighted_projections(xs: list[torch.Tensor], mask: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Sum of the L2-normalised projections with weights ``w`` renormalised over the modalities present."""
    wm = mask * w[None, :]  # (B, M)
    total = wm.sum(dim=1, keepdim=True)
    wm = torch.where(total > 0, wm / total.clamp_min(1e-12), torch.zeros_like(wm))
    normed = torch.stack([torch.nn.functional.normalize(x, dim=1) for x in xs], dim=1)  # (B, M, P)
    normed = torch.where(wm[:, :, None] > 0, normed, 0.0)
    return (wm[:, :, None] * normed).sum(dim=1)


def _mean(xs: list[torch.Tensor], mask: torch.Tensor, order: list[str], weights: Mapping[str, float] | None,
          *, append_mask: bool) -> torch.Tensor:
    return _weighted_projections(xs, mask, torch.ones(len(order), device=mask.device))


def _weighted(xs: list[torch.Tensor], mask: torch.Tensor, order: list[str], weights: Mapping[str, float] | None,
              *, append_mask: bool) -> torch.Tensor:
    return _weighted_projections(xs, mask, torch.tensor(check_weights(weights, order), device=mask.device))


def _concat_dim(dims: list[int], projection_dim: int, append_mask: bool) -> int:
    return sum(dims) + (len(dims) if append_mask else 0)


def _projection_dim(dims: list[int], projection_dim: int, append_mask: bool) -> int:
    return int(projection_dim)


FUSION_MODES.register("concat", FusionMode("features", _concat, _concat_dim))
FUSION_MODES.register("mean", FusionMode("projections", _mean, _projection_dim))
FUSION_MODES.register("weighted", FusionMode("projections", _weighted, _projection_dim))


def fused_dim(mode: str, feature_dims: Mapping[str, int], projection_dim: int, *, append_mask: bool = False,
              modalities: Sequence[str] | None = None) -> int:
    """Width of the fused vector: sum of D_m (+ one per modality with the mask) for concat, P otherwise."""
    entry = FUSION_MODES.get(mode)
    dims = [int(feature_dims[m]) for m in _order(modalities, feature_dims)] if entry.source == "features" else []
    return entry.dim(dims, int(projection_dim), append_mask)


def _tensor(x: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    return t if like is None else t.to(like.device)


def _masks(order: list[str], present: Mapping[str, Any] | None, batch: int, device: torch.device) -> torch.Tensor:
    """(B, M) float mask; ``present=None`` means every modality is present."""
    if present is None:
        return torch.ones(batch, len(order), device=device)
    cols = []
    for m in order:
        if m not in present:
            raise KeyError(f"fusion: no presence mask for modality {m!r}; got {sorted(present)}")
        p = _tensor(present[m]).to(device=device).reshape(-1)
        if p.shape[0] != batch:
            raise ValueError(f"fusion: present[{m!r}] has {p.shape[0]} rows, expected {batch}")
        cols.append(p.to(torch.float32))
    return torch.stack(cols, dim=1)


def fuse(features: Mapping[str, Any], projections: Mapping[str, Any] | None, present: Mapping[str, Any] | None,
         mode: str = "concat", *, weights: Mapping[str, float] | None = None,
         modalities: Sequence[str] | None = None, append_mask: bool = False) -> Any:
    """Fuse one batch; see the module docstring for the modes.

    Args:
        features: modality -> (B, D_m) pre-head features (used by ``concat``).
        projections: modality -> (B, P) projections (used by ``mean``/``weighted``; normalised here).
        present: modality -> (B,) bool; None means all present.
        mode: a name in :data:`FUSION_MODES` (``concat``, ``mean``, ``weighted``).
        weights: modality -> non-negative weight, required by ``weighted`` (see :func:`check_weights`).
        modalities: fixed modality order (default: sorted names of the inputs used).
        append_mask: ``concat`` only: append the (B, M) presence mask as float columns.
    Returns:
        (B, D_f) float32, a torch tensor or numpy array like the inputs.
    """
    entry = FUSION_MODES.get(mode)
    source = features if entry.source == "features" else projections
    if source is None:
        raise ValueError(f"fusion mode {mode!r} needs {entry.source}")
    order = _order(modalities, source)
    as_numpy = not isinstance(source[order[0]], torch.Tensor)
    xs = [_tensor(source[m]) for m in order]
    device = xs[0].device
    xs = [x.to(device=device, dtype=torch.float32) for x in xs]
    batch = xs[0].shape[0]
    for m, x in zip(order, xs):
        if x.ndim != 2 or x.shape[0] != batch:
            raise ValueError(f"fusion: {m!r} input must be (B={batch}, D), got {tuple(x.shape)}")
    if entry.source == "projections":
        dims = {x.shape[1] for x in xs}
        if len(dims) != 1:
            raise ValueError(f"fusion: projections of {order} have different widths {sorted(dims)}")
    mask = _masks(order, present, batch, device)
    out = entry.fuse(xs, mask, order, weights, append_mask=append_mask)
    return out.cpu().numpy().astype(np.float32) if as_numpy else out
