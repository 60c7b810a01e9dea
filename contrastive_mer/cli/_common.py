"""Helpers shared by the ``cmer`` subcommands (they turn library errors into one-line :class:`UserError` s)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, TypeVar, overload

from contrastive_mer.errors import UserError
from contrastive_mer.store.hdf5 import FeatureStore, IncompleteStoreError

T = TypeVar("T")

#: what ``--device`` means in every subcommand that has it
DEVICE_HELP = "auto (default): CUDA when available (cuda:LOCAL_RANK under torchrun), else CPU; or cpu, cuda:1, ..."


def open_store(path: str | Path) -> FeatureStore:
    """Open a finished feature store; a missing, unfinished or unreadable file is a :class:`UserError`."""
    try:
        return FeatureStore(path)
    except (FileNotFoundError, IncompleteStoreError) as e:
        raise UserError(str(e)) from e
    except (OSError, KeyError) as e:
        raise UserError(f"cannot read feature store {path}: {e}") from e


@overload
def comma_list(value: str, convert: Callable[[str], T] = ..., option: str = ...) -> list[T]: ...
@overload
def comma_list(value: None, convert: Callable[[str], T] = ..., option: str = ...) -> None: ...
@overload
def comma_list(value: str | None, convert: Callable[[str], T] = ..., option: str = ...) -> list[T] | None: ...


def comma_list(value: str | None, convert: Callable[[str], Any] = str, option: str = "value") -> list[Any] | None:
    """``"a, b,,c"`` -> ``[convert("a"), convert("b"), convert("c")]`` (blanks dropped); None stays None.
    A value ``convert`` rejects is a :class:`UserError` naming ``option``."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    try:
        return [convert(item) for item in items]
    except ValueError as e:
        kind = getattr(convert, "__name__", "value")
        raise UserError(f"{option}: expected comma-separated {kind} values, got {value!r} ({e})") from None


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``, the same default (``auto``) everywhere."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_out_file(parser: argparse.ArgumentParser, what: str, *, required: bool = True) -> None:
    """``--out FILE``: in every subcommand ``--out`` names one output file (a folder is ``--output``)."""
    parser.add_argument("--out", required=required, metavar="FILE", help=f"output file: {what}")


def add_output_dir(parser: argparse.ArgumentParser, what: str, *, required: bool = False) -> None:
    """``--output DIR``: in every subcommand ``--output`` names a folder (a single file is ``--out``)."""
    parser.add_argument("--output", required=required, metavar="DIR", help=f"output folder: {what}")
