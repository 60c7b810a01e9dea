"""Shared fixtures: small configs built from experiments/demo.yaml, and paths."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

#: CPU threads per test process: the cores shared among pytest-xdist workers (``make test`` runs two), at most 2;
#: set before torch is imported, and inherited by the subprocesses the tests start, so that workers do not
#: oversubscribe the cores
THREADS = max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "demo.yaml"
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(THREADS)

#: a tiny synthetic corpus and tiny encoders: trains in seconds on a CPU
TINY = [
    "data.options.num_speakers=4", "data.options.speakers=[0,1,2]", "data.options.clips_per_speaker_emotion=4",
    "data.options.num_frames=4", "data.options.frame_size=32", "data.batch_size=8", "data.val_fraction=0.34",
    "model.modalities.video.preprocess.size=32", "model.modalities.video.preprocess.num_frames=2",
    "model.modalities.audio.encoder_args.n_mels=32", "model.modalities.audio.encoder_args.blocks=2",
    "model.modalities.audio.encoder_args.output_dim=32", "model.modalities.video.encoder_args.output_dim=32",
    "model.modalities.text.encoder_args.output_dim=32", "model.head.hidden_dim=32", "model.head.output_dim=16",
    "model.modalities.audio.preprocess.max_seconds=1.0",
    "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    "demo.labelled_speakers=null",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not available at {SHARED_DATA}")
    return SHARED_DATA


def cli_error(*argv: str) -> str:
    """Run ``cmer ARGV`` in-process and return its error line; asserts exit status 2 and a single stderr line
    (what a user sees: ``main`` turns UserError, KeyError, ValueError, FileNotFoundError into that line)."""
    from contrastive_mer.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(argv))
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err.getvalue())
    return lines[0]


def fast_dev_run_changes(module, data) -> tuple[set[str], object]:
    """Fit ``module`` on ``data`` for one Lightning ``fast_dev_run`` step on CPU; return the modalities whose
    encoder weights changed, and the trainer."""
    import pytorch_lightning as pl

    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module, datamodule=data)
    changed = {k.split(".")[1] for k, v in module.state_dict().items()
               if k.startswith("encoders.") and not torch.equal(v, before[k])}
    return changed, trainer


def cli_in_fresh_interpreter(argvs: list[list[str]], report: str) -> tuple[list[str], str]:
    """Run ``cmer`` once per argv in one new interpreter (each must exit 0) and evaluate the expression ``report``
    (``sys`` is imported) after each; returns the ``repr`` of each value and the whole stdout."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from contrastive_mer.cli.main import main\n"
            f"for argv in {argvs!r}:\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as exit:\n"
            "        assert exit.code in (0, None), (argv, exit.code)\n"
            f"    print('REPORT', repr({report}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    reports = [line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert len(reports) == len(argvs), proc.stdout
    return reports, proc.stdout
