"""Relative input paths in a config file: resolved against the file's folder, so configs work from any folder.

Rule (applied to the file's own ``data.root`` before ``key=value`` overrides, which stay relative to the current
folder): a relative ``data.root`` that exists relative to the config file's folder becomes that absolute path;
otherwise it is kept as written, i.e. relative to the current folder (how configs were read before). Outputs
(``output_dir``, ``data.cache_dir``) are not touched: they stay relative to the current folder.

``data.root`` may also come from the environment variable ``CMER_DATA_ROOT`` (relative: to the current folder).
Precedence, highest first: a ``data.root=...`` override on the command line, then ``CMER_DATA_ROOT``, then the
config file (or, for ``cmer extract`` / ``frontend-export`` without ``--config``, the checkpoint's saved config).
An unset or empty variable changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

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


#: environment variable that overrides the config's ``data.root`` (below command-line overrides)
DATA_ROOT_ENV = "CMER_DATA_ROOT"


def _has_data_root(layer: Any) -> bool:
    data = layer.get("data") if isinstance(layer, (dict, DictConfig)) else None
    return isinstance(data, (dict, DictConfig)) and "root" in data


def data_root_from_env(layers: Sequence[Any]) -> DictConfig | None:
    """A config layer ``{data: {root: $CMER_DATA_ROOT}}`` to merge above ``layers`` (and below command-line
    overrides), or None when the variable is unset or empty or no layer has a ``data.root`` to override."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    if not value or not any(_has_data_root(layer) for layer in layers):
        return None
    return OmegaConf.create({"data": {"root": str(Path(value).expanduser())}})
