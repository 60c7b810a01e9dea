"""Signals during ``cmer pretrain`` (issue 22, item 2): a real process stopped by SIGTERM or SIGINT exits 143 / 130
(never 0), keeps ``last.ckpt`` and says where it is and how to resume; a corpus scan reacts at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import DEMO, ROOT, TINY

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

#: ``cmer pretrain`` that prints MARK in its 3rd training step of epoch 2 (or while scanning the corpus, with
#: argv[1] == "scan") and then sleeps 3 s, so the test's signal arrives at a known point
MARKED_PRETRAIN = """
import sys, time
where = sys.argv[1]
if where == "scan":
    from contrastive_mer.data.datamodule import MERDataModule
    original_setup = MERDataModule.setup
    def slow_setup(self, *args, **kwargs):
        print("MARK", flush=True)
        time.sleep(30)
        return original_setup(self, *args, **kwargs)
    MERDataModule.setup = slow_setup
else:
    from contrastive_mer.model.module import PairwiseContrastiveModule
    original_step = PairwiseContrastiveModule.training_step
    def marked_step(self, batch, idx):
        if self.trainer.current_epoch == 1 and idx == 2:
            print("MARK", flush=True)
            time.sleep(3)
        return original_step(self, batch, idx)
    PairwiseContrastiveModule.training_step = marked_step
from contrastive_mer.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def signalled_pretrain(tmp_path: Path, where: str, signum: int, *extra: str,
                       command: str = "pretrain") -> subprocess.CompletedProcess:
    """Run ``cmer pretrain`` (or ``cmer demo``) in a child process, send ``signum`` at the mark; its output and
    exit code."""
    script = tmp_path / "marked_pretrain.py"
    script.write_text(MARKED_PRETRAIN)
    argv = [command, "--config", str(DEMO), "--output", str(tmp_path / "run"), *TINY, *extra]
    proc = subprocess.Popen([sys.executable, str(script), where, *argv], env=ENV, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "MARK":
            proc.send_signal(signum)
            break
    out, err = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigterm_mid_epoch_exits_143_keeps_the_checkpoint_and_resumes(tmp_path: Path) -> None:
    """SIGTERM in epoch 2 of 5: exit 143 (was 0, silently), one line naming last.ckpt and the --resume command;
    the checkpoint holds 2 closed epochs and ``--resume`` finishes the run."""
    from contrastive_mer.cli.main import main

    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    proc = signalled_pretrain(tmp_path, "train", signal.SIGTERM, "trainer.max_epochs=5")
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    message = proc.stderr.strip().splitlines()[-1]
    assert message == (f"cmer pretrain: stopped by SIGTERM in epoch 2 (the epoch was cut short and closed); "
                       f"checkpoint: {last}; resume with: cmer pretrain --output {run} --resume"), proc.stderr
    assert "finished in" not in proc.stdout
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and state["global_step"] == 6 + 3  # 6 steps of epoch 1, 3 of the cut epoch 2
    assert len(json.loads((run / "history.json").read_text())) == 2
    assert main(["pretrain", "--output", str(run), "--resume"]) == 0
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 4
    assert len(json.loads((run / "history.json").read_text())) == 5


@pytest.mark.slow
def test_sigint_mid_epoch_exits_130(tmp_path: Path) -> None:
    """Ctrl+C (SIGINT) in epoch 2: exit 130 (was 1 with Lightning's 'attempting graceful shutdown'), the message
    names the checkpoint."""
    proc = signalled_pretrain(tmp_path, "train", signal.SIGINT, "trainer.max_epochs=3")
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1].startswith("cmer pretrain: stopped by SIGINT in epoch 2")
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_sigterm_during_the_corpus_scan_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM while the corpus is scanned (before training): stops within the 30 s the scan would take, exit 143,
    one line saying nothing was trained; no checkpoint."""
    import time

    started = time.time()
    proc = signalled_pretrain(tmp_path, "scan", signal.SIGTERM)
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    assert time.time() - started < 30 + 20 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "cmer pretrain: stopped by SIGTERM before training started; nothing was trained"]
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_sigterm_during_the_demos_pretraining_exits_143(tmp_path: Path) -> None:
    """``cmer demo`` (what ``make demo`` runs) stopped by SIGTERM in its pretraining: exit 143 with the same line
    naming the checkpoint of its pretraining folder (was: exit 0, no message)."""
    proc = signalled_pretrain(tmp_path, "train", signal.SIGTERM, "trainer.max_epochs=3", command="demo")
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    run = tmp_path / "run" / "pretrain"
    assert proc.stderr.strip().splitlines()[-1] == (
        f"cmer demo: stopped by SIGTERM in epoch 2 (the epoch was cut short and closed); checkpoint: "
        f"{run / 'checkpoints' / 'last.ckpt'}; resume with: cmer pretrain --output {run} --resume")
    assert "[demo] 2/5" not in proc.stdout
