"""Checkpoints written atomically: a temp file beside the target, fsync, ``os.replace``.

Lightning's default :class:`~lightning_fabric.plugins.io.TorchCheckpointIO` writes through an fsspec transaction
whose temp file lies in the system temp folder; committing it is ``shutil.move``, a *copy* when that folder is on
another file system, so a full disk during the copy leaves a truncated ``best-*.ckpt`` at the final path (and a
later ``--resume`` or ``best-*.ckpt`` glob picks it up). :class:`AtomicCheckpointIO` never exposes a partial file:
the final name appears only once the whole checkpoint is on disk, and an old checkpoint of the same name stays
intact when writing the new one fails. Pass it to the trainer: ``pl.Trainer(plugins=[AtomicCheckpointIO()])``.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from contrastive_mer.errors import UserError

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "verify_checkpoint_crc"]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _RecordingWriter(io.RawIOBase):
    """The file torch's zip writer writes to, remembering the OSError of a failed write: torch replaces it by
    a RuntimeError such as ``unexpected pos 704 vs 598``, which says nothing about a full disk."""

    def __init__(self, fh: Any) -> None:
        super().__init__()
        self.fh = fh
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = err
            raise


def atomic_torch_save(obj: Any, path: str | Path, *, fsync: bool = True) -> Path:
    """``torch.save(obj, path)`` through ``.<name>.tmp-<pid>`` in the same folder and an atomic rename; on any
    failure (a full disk, an interrupt) the temp file is removed and ``path`` is left as it was. A full disk is
    one OSError (ENOSPC) naming the checkpoint, whatever torch's writer made of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            writer = _RecordingWriter(fh)
            try:
                torch.save(obj, writer)  # type: ignore[arg-type]  # a binary file object
            except RuntimeError:
                if writer.error is None:
                    raise
                err = writer.error
                raise OSError(err.errno, f"{err.strerror or err} while writing the checkpoint {path}; nothing was "
                              "written (an older checkpoint of that name is kept)", str(path)) from None
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def verify_checkpoint_crc(path: str | Path) -> None:
    """Check every entry of a zip-format checkpoint (``torch.save``'s format) against its CRC-32, which torch's own
    reader does not: flipped bytes inside the weights would otherwise load silently. One read of the file; a
    :class:`~contrastive_mer.errors.UserError` naming the file and the entry. Non-zip files are left to the loader
    (which refuses them)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    # NotImplementedError: zipfile's answer to an entry whose compression-method field names no known method
    # (a damaged header), not a missing feature of this code
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise UserError(f"{path}: corrupt checkpoint ({type(err).__name__}: {err})") from None
    if bad is not None:
        raise UserError(f"{path}: corrupt checkpoint: entry {bad!r} fails its CRC-32 check (a damaged copy?)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes local checkpoints with :func:`atomic_torch_save` (remote URLs: the
    default behaviour)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))
