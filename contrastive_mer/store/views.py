"""What a view name means in a feature store: the one rule that probes, the index, retrieval and the front end
share (reached through :meth:`FeatureStore.view <contrastive_mer.store.hdf5.FeatureStore.view>`).

A *view* is one ``(N, D)`` matrix of the store, named by its canonical key, with the rows where it holds data.

Names:

* ``features/<m>``, ``projections/<m>``, ``fused/<mode>``: that dataset (the canonical key).
* ``<m>``, a modality of the store: ``features/<m>``, the features before projection (what probes, fusion and
  the front end use). Projections are always named in full: ``projections/<m>``.
* ``fused``: the fused modes, ``fused/<mode>`` each in the store's order. Where one view is needed
  (:func:`view_key`, an index) the store must have exactly one fused mode; otherwise the error lists the
  ``fused/<mode>`` choices.
* ``<mode>``, a fused mode that is not a modality name: ``fused/<mode>``.

Anything else is a ``KeyError`` that lists the store's views.

Usable rows: for ``features/<m>`` and ``projections/<m>`` the rows where ``present/<m>`` is true; for
``fused/<mode>`` the rows where at least one modality is present (elsewhere it is all zeros); in both cases
only rows whose values are all finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

GROUPS = ("features", "projections", "fused")


@dataclass(frozen=True)
class StoreView:
    """One view of a store: ``vectors`` (N, D) as stored, ``usable`` (N,) bool, canonical ``key``."""

    key: str
    vectors: np.ndarray
    usable: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """Indices of the usable rows."""
        return np.flatnonzero(self.usable)


def available_views(store: Any) -> list[str]:
    """Every name form the store answers to: its modalities, ``fused``, and each canonical key."""
    keys = [f"{g}/{m}" for g in ("features", "projections") for m in store.modalities if f"{g}/{m}" in store]
    modes = [f"fused/{mode}" for mode in store.fused_modes()]
    return list(store.modalities) + ["fused"] * bool(modes) + keys + modes


def _unknown(store: Any, name: str, why: str = "is not") -> KeyError:
    return KeyError(f"view {name!r} {why} in {store.path}; its modalities are {list(store.modalities)} and its "
                    f"views {available_views(store)}")


def view_keys(store: Any, name: str) -> list[str]:
    """The canonical keys ``name`` stands for (several only for ``fused``); see the module docstring."""
    group, sep, rest = name.partition("/")
    if sep:
        if group not in GROUPS or not rest or name not in store:
            raise _unknown(store, name)
        return [name]
    if name in store.modalities:
        return [f"features/{name}"]
    modes = list(store.fused_modes())
    if name == "fused":
        if not modes:
            raise _unknown(store, name, "matches no fused mode")
        return [f"fused/{mode}" for mode in modes]
    if name in modes:
        return [f"fused/{name}"]
    raise _unknown(store, name)


def expand_views(store: Any, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(name, key)`` for each key the ``names`` stand for, without repeats; ``None`` = every modality and
    every fused mode."""
    if names is None:
        names = list(store.modalities) + ["fused"] * bool(store.fused_modes())
    return list(dict.fromkeys((name, key) for name in names for key in view_keys(store, name)))


def view_key(store: Any, name: str) -> str:
    """The one canonical key of ``name``; a ``KeyError`` listing the choices when it stands for several."""
    keys = view_keys(store, name)
    if len(keys) > 1:
        raise KeyError(f"view {name!r} of {store.path} is one of several fused modes; choose one of {keys}")
    return keys[0]


def _present_modalities(store: Any, key: str) -> list[str]:
    """The modalities whose presence makes a row of ``key`` hold data (any one of them suffices)."""
    group, _, name = key.partition("/")
    return list(store.modalities) if group == "fused" else [name]


def load_view(store: Any, name: str) -> StoreView:
    """Read the view ``name`` (one key) with its usable rows."""
    key = view_key(store, name)
    vectors = store.dataset(key)
    present = np.zeros(len(vectors), dtype=bool)
    for m in _present_modalities(store, key):
        present |= store.present(m)
    return StoreView(key, vectors, present & np.isfinite(vectors).all(axis=1))


def load_view_row(store: Any, name: str, row: int) -> tuple[str, np.ndarray, bool]:
    """``(key, vector, usable)`` of one row of the view ``name``, without reading the whole view."""
    key = view_key(store, name)
    vector = np.asarray(store.row(key, row))
    present = any(bool(store.row(f"present/{m}", row)) for m in _present_modalities(store, key))
    return key, vector, present and bool(np.isfinite(vector).all())


def view_dim(store: Any, name: str) -> int:
    """Width D of the view ``name`` (one key), from the dataset's shape."""
    return int(store.dataset_shape(view_key(store, name))[1])
