"""Packaging: the configs the library needs ship inside it, the public API is importable from the package root
without importing torch, and ``cmer demo --fast`` runs from a wheel installed into a fresh venv outside the
checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import contrastive_mer
from contrastive_mer.configs import config_path
from tests.conftest import ROOT, TINY


def test_packaged_demo_config_is_the_experiments_copy() -> None:
    packaged = config_path("demo.yaml")
    assert packaged.parent == Path(contrastive_mer.__file__).parent / "configs"
    assert packaged.read_bytes() == (ROOT / "experiments" / "demo.yaml").read_bytes(), \
        "contrastive_mer/configs/demo.yaml and experiments/demo.yaml differ: copy one over the other"
    with pytest.raises(FileNotFoundError, match="shipped: demo.yaml"):
        config_path("nope.yaml")


def test_public_api_is_lazy_and_complete() -> None:
    code = ("import sys, contrastive_mer as c; assert 'torch' not in sys.modules, 'eager import'; "
            "c.load_config; assert 'contrastive_mer.config' in sys.modules; print(len(c.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for name in contrastive_mer.__all__:
        assert getattr(contrastive_mer, name) is not None, name
    # the README's snippet
    from contrastive_mer import FeatureStore, extract_from_checkpoint, load_config, pretrain  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        contrastive_mer.nope  # noqa: B018


def _copy_sources(dest: Path) -> Path:
    """The files a wheel is built from (tracked or not), without caches, so the build leaves the checkout alone."""
    src = dest / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "contrastive_mer", src / "contrastive_mer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


@pytest.mark.slow
def test_demo_runs_from_a_wheel_outside_the_checkout(tmp_path: Path) -> None:
    """Build the wheel, install it (no dependencies) into a new venv that borrows this environment's
    dependencies through a .pth file (their .pth files, e.g. the editable install's finder, are not run), and
    run ``cmer demo --fast`` (tiny settings) from a folder outside the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run = lambda *cmd: subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,  # noqa: E731
                                      cwd=tmp_path, timeout=600)
    build = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "wheels",
                _copy_sources(tmp_path))
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "wheels").glob("contrastive_mer-*.whl"))
    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    Path(site, "cmer_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)
    assert install.returncode == 0, install.stderr
    where = run(python, "-c", "import contrastive_mer; print(contrastive_mer.__file__)")
    assert where.stdout.strip().startswith(site), where.stdout + where.stderr  # the wheel, not the checkout
    demo = run(venv / "bin" / "cmer", "demo", "--fast", "--output", tmp_path / "run", *TINY)
    assert demo.returncode == 0, demo.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["test_speakers"] == [3] and report["table"]["fused/concat"]
