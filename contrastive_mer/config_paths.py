"""Relative input paths in a config file: resolved against the file's folder, so configs work from any folder.

Rule (applied to the file's own ``data.root`` before ``key=value`` overrides, which stay relative to the current
folder): a relative ``data.root`` that exists relative to the config file's folder becomes that absolute path;
otherwise it is kept as written, i.e. relative to the current folder (how configs were read before). Outputs
(``output_dir``, ``data.cache_dir``) are not touched: they stay relative to the current folder.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

#: keys of a config file that name inputs and are resolved against the file's folder
INPUT_PATH_KEYS = ("data.root",)


def resolve_input_paths(layer: DictConfig, file: Path) -> DictConfig:
    """``layer`` (the config file as loaded) with its relative input paths resolved by the rule above."""
    for key in INPUT_PATH_KEYS:
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(layer, parent_key, default=None, throw_on_resolution_failure=False)
        if not isinstance(parent, DictConfig) or name not in parent or OmegaConf.is_interpolation(parent, name):
            continue
        value = parent[name]
        if not isinstance(value, str) or not value or value.startswith("~") or Path(value).is_absolute():
            continue
        candidate = file.parent / value
        if candidate.exists():
            parent[name] = str(candidate.resolve())
    return layer
