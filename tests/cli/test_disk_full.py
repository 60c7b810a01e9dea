"""Issue 22 item 9: a full disk while writing a checkpoint (torch's zip writer), a FAISS index or a report file
(``--json``) is one line naming the file, with nothing half-written left behind and an older file of the same
name intact. The disk is a real tmpfs of a few hundred KiB (mounting one needs root; elsewhere the tests skip)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from tests.store.test_hdf5 import make_rows, write_store


@contextlib.contextmanager
def small_disk(where: Path, kib: int, *, leave: int | None = None) -> Iterator[Path]:
    """A real tmpfs of ``kib`` KiB at ``where``; with ``leave``, a filler file takes all but ``leave`` bytes."""
    where.mkdir(exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("needs root and mount to make a small tmpfs")
    try:
        if leave is not None:
            st = os.statvfs(where)
            with open(where / "filler", "wb") as fh:
                with contextlib.suppress(OSError):
                    fh.write(bytes(max(0, st.f_bavail * st.f_frsize - leave)))
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def cmer(*argv: str) -> tuple[int, list[str]]:
    from contrastive_mer.cli.main import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue().strip().splitlines()


def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_the_old_one(tmp_path: Path) -> None:
    """Was: torch's RuntimeError ``[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598``, a
    traceback from the CLI that says nothing about the disk."""
    import torch

    from contrastive_mer.cli.main import _environment_error
    from contrastive_mer.model.checkpoint_io import atomic_torch_save
    with small_disk(tmp_path / "disk", 512) as disk:
        ckpt = disk / "last.ckpt"
        atomic_torch_save({"w": torch.arange(10.0)}, ckpt)
        with pytest.raises(OSError) as err:
            atomic_torch_save({"w": torch.zeros(1 << 20)}, ckpt)  # 4 MiB
        line = _environment_error(err.value)
        assert err.value.errno == 28 and line is not None and str(ckpt) in line and "\n" not in line
        assert sorted(p.name for p in disk.iterdir()) == ["last.ckpt"]  # no temp file
        assert torch.equal(torch.load(ckpt, weights_only=True)["w"], torch.arange(10.0))


def test_disk_full_while_writing_an_index_is_one_line(tmp_path: Path) -> None:
    """``cmer index --out`` onto a disk with 8 KiB left: was a FAISS RuntimeError traceback (``write error in
    .x.faiss.tmp``); now one line, exit 2, and the index written before (smaller) and its sidecar still load."""
    from contrastive_mer.store.index import EmbeddingIndex, sidecar_path
    store = write_store(tmp_path / "s.h5", make_rows(3000), batch=1000)
    small = write_store(tmp_path / "small.h5", make_rows(20), batch=20)
    with small_disk(tmp_path / "disk", 256) as disk:
        out = disk / "x.faiss"
        assert cmer("index", "--features", str(small), "--modality", "projections/audio", "--out", str(out),
                    "--gpu", "no")[0] == 0
        with open(disk / "filler", "wb") as fh:  # all but 8 KiB
            st = os.statvfs(disk)
            fh.write(bytes(st.f_bavail * st.f_frsize - 8192))
        code, lines = cmer("index", "--features", str(store), "--modality", "projections/audio", "--out",
                           str(out), "--gpu", "no")
        assert code == 2 and len(lines) == 1, lines
        assert "No space left on device" in lines[0] and str(out) in lines[0]
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "x.faiss", "x.faiss.json"]
        assert len(EmbeddingIndex.load(out, use_gpu=False)) == 20 and sidecar_path(out).is_file()


def test_disk_full_while_writing_a_json_report_leaves_no_file(tmp_path: Path) -> None:
    """``cmer retrieve --json`` onto a full disk: was one line but a 0-byte ``r.json`` left behind (a later
    reader takes it for a result); now nothing is left, and an older report of that name stays whole."""
    store = write_store(tmp_path / "s.h5", make_rows(30), batch=30)
    index = tmp_path / "i.faiss"
    assert cmer("index", "--features", str(store), "--modality", "projections/audio", "--out", str(index),
                "--gpu", "no")[0] == 0
    with small_disk(tmp_path / "disk", 64, leave=0) as disk:
        report = disk / "r.json"
        code, lines = cmer("retrieve", "--features", str(store), "--index", str(index), "--query",
                           make_rows(1)["ids"][0], "--k", "3", "--json", str(report))
        assert code == 2 and len(lines) == 1 and "No space left on device" in lines[0], lines
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    from contrastive_mer.utils import write_text_atomic
    older = tmp_path / "old.json"
    older.write_text('{"old": true}')
    with pytest.raises(TypeError):  # a failure half-way through (here: not text) keeps the older file whole
        write_text_atomic(older, np.zeros(3))  # type: ignore[arg-type]
    assert older.read_text() == '{"old": true}' and not list(tmp_path.glob(".old.json.tmp-*"))
