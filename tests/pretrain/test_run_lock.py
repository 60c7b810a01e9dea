"""Locks on a pretraining run folder and on the output of ``cmer extract --merge-shards`` (issue 13): the second
of two real processes fails at once with one line naming the first's pid (exit 2); the first finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from contrastive_mer.pretrain.run_dir import LOCK_NAME
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from contrastive_mer.store.lock import lock_path_for
from contrastive_mer.store.merge import shard_store_path
from tests.conftest import DEMO, ROOT, TINY

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

#: ``cmer pretrain`` whose Trainer.fit waits for the file argv[1] before training (at most 120 s)
PAUSED_PRETRAIN = """
import os, sys, time
import pytorch_lightning as pl
original = pl.Trainer.fit
def paused_fit(self, *args, **kwargs):
    print("training", flush=True)
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[1]) and time.time() < deadline:
        time.sleep(0.05)
    return original(self, *args, **kwargs)
pl.Trainer.fit = paused_fit
from contrastive_mer.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def pretrain_argv(run: Path, *extra: str) -> list[str]:
    return ["pretrain", "--config", str(DEMO), "--output", str(run), *extra, *TINY]


def start_paused_pretrain(tmp_path: Path, run: Path) -> tuple[subprocess.Popen, Path]:
    script, go = tmp_path / "paused_pretrain.py", tmp_path / "go"
    script.write_text(PAUSED_PRETRAIN)
    first = subprocess.Popen([sys.executable, str(script), str(go), *pretrain_argv(run)], env=ENV, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdout is not None
    for line in first.stdout:  # blocks until the first process trains (or dies: then the loop ends)
        if line.strip() == "training":
            return first, go
    first.kill()
    raise AssertionError(first.stderr.read() if first.stderr else "no output")


def cmer_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=120)


def test_second_pretraining_in_the_same_run_folder_fails_at_once(tmp_path: Path) -> None:
    """While a real ``cmer pretrain --output R`` trains, a second one (plain, --resume, --overwrite) exits 2 at once
    naming its pid; once the first is killed (-9) the folder is free: a run with --overwrite trains and leaves no
    lock file."""
    from contrastive_mer.cli.main import main
    run = tmp_path / "run"
    first, _ = start_paused_pretrain(tmp_path, run)
    try:
        assert (run / LOCK_NAME).read_text().strip() == str(first.pid)
        for extra in ([], ["--resume"], ["--overwrite"]):
            started = time.time()
            second = cmer_process(*pretrain_argv(run, *extra))
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, second.stderr
            assert lines[0].startswith(f"cmer pretrain: error: {run}: this run folder is being written by another "
                                       f"process (pid {first.pid}")
            assert time.time() - started < 60 and first.poll() is None  # at once, and the first goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run / LOCK_NAME).exists()  # left behind by kill -9, no longer locked
    assert main(pretrain_argv(run, "--overwrite")) == 0
    assert not (run / LOCK_NAME).exists() and (run / "checkpoints" / "last.ckpt").is_file()


# ------------------------------------------------------------------------------------------- --merge-shards
PAUSED_MERGE = """
import os, sys, time
from contrastive_mer.store import merge
original = merge._write_merged
def paused(*args, **kwargs):
    print("merging", flush=True)
    deadline = time.time() + 120
    while not os.path.exists(sys.argv[1]) and time.time() < deadline:
        time.sleep(0.05)
    return original(*args, **kwargs)
merge._write_merged = paused
from contrastive_mer.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def write_shards(out: Path, n: int = 2, rows: int = 6) -> list[str]:
    rng = np.random.default_rng(0)
    ids = [f"c{i:02d}" for i in range(rows * n)]
    for s in range(n):
        mine = ids[s::n]
        w = FeatureStoreWriter(shard_store_path(out, s, n), ["audio"], {"audio": 3}, None, fsync=False,
                               attrs={"shard_index": s, "num_shards": n})
        w.append(mine, {}, {}, {"audio": rng.normal(size=(len(mine), 3))}, projections={},
                 present={"audio": np.ones(len(mine), bool)},
                 fused={})
        w.finish()
    return ids


def test_second_merge_to_the_same_output_fails_at_once(tmp_path: Path) -> None:
    out = tmp_path / "feats.h5"
    ids = write_shards(out)
    script, go = tmp_path / "paused_merge.py", tmp_path / "go"
    script.write_text(PAUSED_MERGE)
    first = subprocess.Popen([sys.executable, str(script), str(go), "extract", "--merge-shards", str(out)],
                             env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "merging"
        for extra in ([], ["--overwrite"]):
            second = cmer_process("extract", "--merge-shards", str(out), *extra)
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, second.stderr
            assert lines[0].startswith(f"cmer extract: error: {out}: this feature store is being written by "
                                       f"another process (pid {first.pid}")
        assert first.poll() is None
        go.touch()
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not lock_path_for(out).exists()
    with FeatureStore(out) as store:
        assert list(store.ids) == sorted(ids)


HOLD_RUN_LOCK = """
import sys
from contrastive_mer.pretrain.run_dir import lock_run_dir
lock = lock_run_dir(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def test_library_pretrain_takes_the_run_folder_lock(tmp_path: Path) -> None:
    """``training.pretrain()`` (not only the CLI) refuses a folder another process holds, before writing there."""
    import pytest

    from contrastive_mer.experiment import load_config
    from contrastive_mer.pretrain.loop import pretrain
    from contrastive_mer.store.lock import OutputLockedError
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN_LOCK, str(run)], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            pretrain(load_config(DEMO, TINY), run)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing of a run written
    finally:
        holder.kill()
        holder.wait()


def test_one_pretrain_process_takes_the_run_folder_lock_once(tmp_path: Path, monkeypatch) -> None:
    """``cmer pretrain --output RUN`` locks the folder before importing the trainer and ``pretrain()`` runs
    under that lock: one acquisition per process (before: two, the second taking the first's over), and the
    lock file is gone when the run ends. ``pretrain()`` called from Python takes it itself, once."""
    from contrastive_mer.cli.main import main
    from contrastive_mer.experiment import load_config
    from contrastive_mer.pretrain import loop, run_dir
    from contrastive_mer.store import lock as lock_mod

    taken: list[Path] = []
    real = lock_mod.acquire

    def counting(path, what="output", lock_file=None):
        taken.append(Path(lock_file if lock_file is not None else lock_mod.lock_path_for(path)))
        return real(path, what, lock_file=lock_file)

    monkeypatch.setattr(run_dir, "acquire", counting)
    run = tmp_path / "run"
    assert main(pretrain_argv(run, "trainer.fast_dev_run=true")) == 0
    assert taken == [run / LOCK_NAME] and not (run / LOCK_NAME).exists()
    taken.clear()
    cfg = load_config(DEMO, [*TINY, "trainer.fast_dev_run=true"])
    loop.pretrain(cfg, tmp_path / "py-run")
    assert taken == [tmp_path / "py-run" / LOCK_NAME] and not (tmp_path / "py-run" / LOCK_NAME).exists()
