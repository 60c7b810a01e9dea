"""Configs the library itself needs, shipped as package data (``cmer demo`` reads ``demo.yaml`` from here, so a
wheel or ``pip install .`` runs it without the repository). ``experiments/`` holds the user-facing copies; a
test keeps the two identical."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["config_path"]


def config_path(name: str) -> Path:
    """Path of the packaged config ``name`` (e.g. ``"demo.yaml"``); ``FileNotFoundError`` naming the ones there."""
    folder = files(__name__)
    resource = folder / name
    if not resource.is_file():
        known = sorted(r.name for r in folder.iterdir() if r.name.endswith(".yaml"))
        raise FileNotFoundError(f"no packaged config {name!r}; shipped: {', '.join(known)}")
    return Path(str(resource))
