"""A modality missing at test time: the test side of a store as a probe sees it when ``modality`` is absent.

The store records which modalities each clip has (``present/<m>``). :class:`MissingModality` wraps a store:

* ``lacking``: when some (labelled) clips of the store lack ``modality``, only those clips are test rows; their
  vectors are the stored ones (extraction already fused them without the modality).
* ``masked``: when every clip has it, every clip is a test row with ``modality`` masked out
  (``present=False``) and each fused view recomputed by the library's fusion rule
  (:func:`contrastive_mer.fusion.fuse`, with the store's fusion weights); the modality's own views
  (``features/<m>``, ``projections/<m>``) then have no test rows.

The probes are still trained on the training clips as they are. Used by ``cmer probe --missing`` and
``cmer evaluate --missing`` through :func:`~contrastive_mer.evaluation.protocol.store_views`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contrastive_mer.store.views import StoreView

LACKING, MASKED = "lacking", "masked"


class MissingModality:
    """The test side of ``store`` without ``modality`` (see the module docstring). Delegates everything else to
    the store; ``candidates`` (bool per row, default all) are the rows that may be tested (e.g. labelled ones)."""

    def __init__(self, store: Any, modality: str, candidates: np.ndarray | None = None) -> None:
        if modality not in store.modalities:
            raise KeyError(f"--missing {modality!r}: not a modality of {store.path}; it has {store.modalities}")
        self.store = store
        self.modality = modality
        n = len(store)
        self.candidates = np.ones(n, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
        self.lacking = ~store.present(modality)
        self.mode = LACKING if (self.lacking & self.candidates).any() else MASKED
        self._views: dict[str, StoreView] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, key: object) -> bool:
        return key in self.store

    def view(self, name: str) -> StoreView:
        """The view's vectors as tested and the rows its statistics (``--normalize-by``) may use: in ``lacking``
        mode the stored view; in ``masked`` mode the view recomputed without the modality."""
        base = self.store.view(name)
        if self.mode == LACKING:
            return base
        if base.key not in self._views:
            self._views[base.key] = self._masked(base)
        return self._views[base.key]

    def test_rows(self, name: str) -> np.ndarray:
        """Bool per row: the rows of view ``name`` that are tested."""
        usable = self.view(name).usable & self.candidates
        return usable & self.lacking if self.mode == LACKING else usable

    def _masked(self, base: StoreView) -> StoreView:
        group, _, rest = base.key.partition("/")
        if group in ("features", "projections"):
            if rest == self.modality:
                return StoreView(base.key, base.vectors, np.zeros(len(base.usable), dtype=bool))
            return base
        from contrastive_mer.fusion import fuse

        mods = list(self.store.modalities)
        present = {m: self.store.present(m) & (m != self.modality) for m in mods}
        features = {m: self.store.features(m) for m in mods}
        projections = {m: self.store.projections(m) for m in mods if f"projections/{m}" in self.store}
        vectors = fuse(features, projections or None, present, mode=rest,
                       weights=self.store.attrs.get("fusion_weights"), modalities=mods)
        any_present = np.zeros(len(base.usable), dtype=bool)
        for m in mods:
            any_present |= present[m]
        return StoreView(base.key, vectors, any_present & np.isfinite(vectors).all(axis=1))

    def describe(self, clips: int) -> dict[str, Any]:
        """What was done, for reports: modality, mode, clips tested, and a sentence."""
        how = (f"tested only on the {clips} test clips that lack {self.modality}" if self.mode == LACKING else
               f"no test clip lacks {self.modality}: tested on {clips} test clips with {self.modality} masked out "
               "and the fusion recomputed")
        return {"modality": self.modality, "mode": self.mode, "clips": int(clips), "text": how}
