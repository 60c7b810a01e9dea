"""Bounded reads of small input files: ``.npy`` arrays and text (transcripts), checked before anything is read.

* :func:`load_npy` parses the ``.npy`` header first (``numpy.lib.format``) and refuses, without allocating, a file
  that is empty, not a regular file, an object (pickled) array, larger than ``max_bytes``, or whose declared
  shape needs more (or fewer) bytes than the file holds.
* :func:`read_text` opens only regular files (a FIFO, ``/dev/zero`` or a folder is refused without blocking),
  at most ``max_bytes`` long, decoded as UTF-8.

Both raise :class:`BadFileError` (a ``ValueError``) naming the file and what is wrong; dataset adapters turn it
into a skipped clip.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["BadFileError", "MAX_NPY_BYTES", "MAX_TEXT_BYTES", "load_npy", "read_text"]

#: default cap of one ``.npy`` feature file (a clip's features; 1 GiB is far above any real one)
MAX_NPY_BYTES = 1 << 30
#: default cap of one text file (a transcript)
MAX_TEXT_BYTES = 1 << 20


class BadFileError(ValueError):
    """An input file that cannot be used; the message names it and the reason."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(path: Path) -> tuple[io.BufferedReader, int]:
    """Open ``path`` for reading without blocking (a FIFO would) and check it is a regular file; (file, size)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise BadFileError(f"{path}: cannot open ({err.strerror or err})") from None
    except ValueError:  # os.open refuses a path holding a NUL character
        raise BadFileError(f"{str(path)!r}: cannot open (the path holds a NUL character)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadFileError(f"{path}: {_kind(info.st_mode)}, expected a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | Path, max_bytes: int = MAX_TEXT_BYTES, what: str = "text file") -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes (``what`` names it in errors)."""
    path = Path(path)
    fh, size = _open_regular(path)
    with fh:
        if size > max_bytes:
            raise BadFileError(f"{path}: {what} of {size} bytes exceeds the limit of {max_bytes} bytes")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since it was checked
        raise BadFileError(f"{path}: {what} exceeds the limit of {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadFileError(f"{path}: {what} is not UTF-8 text ({err})") from None


def _header(fh: BinaryIO, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(fh)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(fh)
        if version == (3, 0):  # utf-8 field names; numpy has no public reader of this header version
            return npy_format._read_array_header(fh, version)  # type: ignore[attr-defined]
        raise ValueError(f"unsupported .npy format version {version}")
    except Exception as err:  # noqa: BLE001 - numpy's header parser raises many kinds (tokenize.TokenError, ...)
        raise BadFileError(f"{path}: not a valid .npy file ({type(err).__name__}: {err})") from None


def load_npy(path: str | Path, max_bytes: int = MAX_NPY_BYTES) -> np.ndarray:
    """Load a plain (non-object) ``.npy`` array after checking its header against the file size and
    ``max_bytes``; never unpickles and never allocates more than the file holds."""
    path = Path(path)
    fh, size = _open_regular(path)
    with fh:
        if size == 0:
            raise BadFileError(f"{path}: empty file (0 bytes), expected a .npy array")
        shape, fortran, dtype = _header(fh, path)
        if dtype.hasobject:
            raise BadFileError(f"{path}: .npy holds Python objects ({dtype}); only numeric arrays are read")
        if any(int(n) < 0 for n in shape):
            raise BadFileError(f"{path}: .npy header declares a negative shape {shape}")
        count = 1
        for n in shape:
            count *= int(n)
        need = count * dtype.itemsize
        if need > max_bytes:
            raise BadFileError(f"{path}: .npy header declares shape {shape} {dtype} ({need} bytes), over the "
                               f"limit of {max_bytes} bytes")
        have = size - fh.tell()
        if need != have:
            raise BadFileError(f"{path}: .npy header declares shape {shape} {dtype} ({need} bytes of data) but "
                               f"the file holds {have} bytes after its header (truncated or not a .npy file)")
        data = bytearray(need)  # writable: the array below shares it without a copy
        if fh.readinto(data) != need:
            raise BadFileError(f"{path}: .npy file changed while it was read")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")
