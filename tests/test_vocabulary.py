"""One word, one meaning: a *manifest* is a corpus table (``cmer init-manifest``), a *view* is a named matrix of
a feature store (``store/views.py``). The store's own list of its parts folder is the *parts list*, and the two
temporal crops of a two-window batch are *windows*."""

from __future__ import annotations

import re
from pathlib import Path

import contrastive_mer
from contrastive_mer.data import windows

PACKAGE = Path(contrastive_mer.__file__).resolve().parent


def _lines(path: Path, word: str) -> list[str]:
    return [f"{path.name}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(word, line, re.IGNORECASE)]


def test_the_store_says_parts_list_not_manifest() -> None:
    hits = [h for p in sorted((PACKAGE / "store").glob("*.py")) for h in _lines(p, r"manifest")
            if "LEGACY_PARTS_LIST_NAMES" not in h and "manifest.json" not in h]
    assert hits == []


def test_the_two_temporal_crops_are_windows_not_views() -> None:
    assert hasattr(windows.TwoWindowCollator, "windows") and not hasattr(windows.TwoWindowCollator, "views")
    assert hasattr(windows, "split_windows") and not hasattr(windows, "split_views")
    files = [PACKAGE / "data" / "windows.py", PACKAGE / "model" / "losses.py", PACKAGE / "model" / "module.py",
             PACKAGE / "model" / "augment.py"]
    hits = [h for p in files for h in _lines(p, r"\bviews?\b") if ".view(" not in h]
    assert hits == []
