"""Helpers shared by the ``cmer`` subcommands (they turn library errors into one-line :class:`UserError` s)."""

from __future__ import annotations

from pathlib import Path

from contrastive_mer.errors import UserError
from contrastive_mer.store.hdf5 import FeatureStore, IncompleteStoreError


def open_store(path: str | Path) -> FeatureStore:
    """Open a finished feature store; a missing, unfinished or unreadable file is a :class:`UserError`."""
    try:
        return FeatureStore(path)
    except (FileNotFoundError, IncompleteStoreError) as e:
        raise UserError(str(e)) from e
    except (OSError, KeyError) as e:
        raise UserError(f"cannot read feature store {path}: {e}") from e
