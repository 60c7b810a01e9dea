"""Issue 22 items 10-12: config errors are reported before torch is imported, non-finite or out-of-range
numbers are config errors, and ``cmer extract`` takes its store lock before loading anything (a second writer of
one store fails in about a second). Each case runs ``cmer`` in a fresh interpreter that prints whether torch got
imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

DEMO = str(ROOT / "experiments" / "demo.yaml")
#: runs ``cmer ARGV`` and prints {"code", "torch", "seconds"} as its last stdout line
PROBE = """
import json, sys, time
t = time.time()
from contrastive_mer.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "seconds": time.time() - t}))
"""


def cmer_fresh(*argv: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["pretrain", "--config", DEMO, "trainer.max_epoch=3"], "Key 'max_epoch' not in 'TrainerConfig'"),
    (["pretrain", "--config", DEMO, "optim.lr=1e400"], "optim.lr: inf is not a finite number"),
    (["pretrain", "--config", DEMO, "optim.lr=0"], "optim.lr: 0.0 must be in (0, 10]"),
    (["pretrain", "--config", DEMO, "loss.temperature=.nan"], "loss.temperature: nan is not a finite number"),
    (["demo", "--fast", "optim.momentum=1.5"], "optim.momentum: 1.5 must be in [0, 1)"),
    (["extract", "--checkpoint", "none.ckpt", "--out", "x.h5", "data.batchsize=3"], "Key 'batchsize'"),
    (["evaluate", "--checkpoint", "none.ckpt", "--output", "ev", "--label", "emotion", "--group", "speaker",
      "data.root_dir=x"], "Key 'root_dir' not in 'DataConfig'"),
])
def test_config_errors_come_before_torch(argv: list[str], message: str) -> None:
    """Was: torch, Lightning and the encoders imported first (11-39 s under load) for a misspelt key."""
    report, err = cmer_fresh(*argv)
    lines = err.strip().splitlines()
    assert report["code"] == 2 and len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith(f"cmer {argv[0]}: error: ")
    assert report["torch"] is False


def test_non_finite_numbers_anywhere_are_config_errors() -> None:
    from contrastive_mer.errors import ConfigError
    from contrastive_mer.experiment import load_config
    for override, key in [("optim.lr=1e400", "optim.lr"), ("optim.weight_decay=-inf", "optim.weight_decay"),
                          ("trainer.gradient_clip_val=.inf", "trainer.gradient_clip_val"),
                          ("optim.betas=[0.9,.nan]", "optim.betas[1]"), ("optim.gamma=2", "optim.gamma")]:
        with pytest.raises(ConfigError, match=rf"^{key.replace('[', '.').replace(']', '.')}"):
            load_config(DEMO, [override])
    load_config(DEMO, ["optim.lr=0.5"])  # in range: accepted


HOLD = """
import sys
from contrastive_mer.store.lock import acquire
lock = acquire(sys.argv[1], "feature store")
print("held", flush=True)
sys.stdin.read()
"""


def test_second_extract_fails_before_loading_anything(tmp_path: Path) -> None:
    """A real process holds the store lock; ``cmer extract`` to the same store (and to the same shard of it)
    fails with the holder's pid before torch, the checkpoint or the corpus are loaded (was: after 36 s of
    start-up). The checkpoint need not even exist: the lock comes first."""
    out = tmp_path / "feats.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for target, extra in [(out, []), (tmp_path / "feats.shard-1-of-3.h5", ["--shard-index", "1",
                                                                           "--num-shards", "3"])]:
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            started = time.monotonic()
            report, err = cmer_fresh("extract", "--checkpoint", str(tmp_path / "model.ckpt"), "--out", str(out),
                                     "--no-progress", *extra)
            wall = time.monotonic() - started
        finally:
            holder.kill()
            holder.wait()
        lines = err.strip().splitlines()
        assert report["code"] == 2 and len(lines) == 1, err
        assert f"pid {holder.pid}" in lines[0] and str(target) in lines[0]
        assert report["torch"] is False
        assert report["seconds"] < 2.0, report  # in-process time after the interpreter started
        print(f"{target.name}: refused in {report['seconds']:.2f} s (process wall {wall:.2f} s)")
