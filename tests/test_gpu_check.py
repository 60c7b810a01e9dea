"""``benchmarks/gpu_check.py --tiny``: every section runs on the CPU with the packages a GPU machine lacks blocked,
the figures are consistent, and what cannot run is skipped with a reason instead of failing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run_blocked(out: Path, blocked: list[str], *args: str) -> dict:
    """Run the check in a fresh interpreter where ``blocked`` modules cannot be imported (as on the GPU machines)."""
    code = ("import runpy, sys\n"
            f"sys.modules.update(dict.fromkeys({blocked!r}))\n"
            f"sys.argv = [{str(SCRIPT)!r}, '--tiny', '--strict', '--out', {str(out)!r}, *{list(args)!r}]\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "gpu_check.md").read_text().startswith("Device: CPU")
    return json.loads((out / "gpu_check.json").read_text())


def test_tiny_check_without_media_audio_and_index_packages(tmp_path: Path) -> None:
    result = run_blocked(tmp_path, ["av", "soundfile", "torchaudio", "faiss"])
    env, sections, notes = result["environment"], result["sections"], result["notes"]
    assert env["packages"] == {"omegaconf": True, "yaml": True, "faiss": False, "av": False, "soundfile": False}
    assert [r["batch"] for r in sections["loss"]] == [64, 128, 256]
    assert all(r["max_grad_diff"] < 1e-5 and r["naive_ms"] > 0 and r["library_ms"] > 0 for r in sections["loss"])
    assert sections["probe"][0]["device"] == "cpu" and sections["probe"][0]["test_accuracy"] > 1 / 8 + 0.1
    assert "faiss" not in sections and any("FAISS: skipped, faiss is not installed" in n for n in notes)
    rows = {(r["config"], r["precision"], r["compile"]) for r in sections["training"]}
    assert rows == {(c, p, False) for c in ("demo", "paper") for p in ("fp32", "bf16-mixed")} | {("demo", "fp32", True)}
    assert all(math.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in sections["training"])
    assert {(r["config"], r["precision"]) for r in sections["extraction"]} == \
        {(c, p) for c in ("demo", "paper") for p in ("fp32", "bf16-mixed")}
    paper = next(r for r in sections["training"] if r["config"] == "paper")
    demo = next(r for r in sections["training"] if r["config"] == "demo")
    assert paper["params_m"] > 10 * demo["params_m"]  # the paper config really is the larger model
    backbone = {(r["what"], r["precision"]): r for r in sections.get("backbones", [])}
    if not any(n.startswith("backbone") and "skipped" in n for n in notes):  # last: a loaded machine may run out
        assert len(backbone) == 4 and all(r["seconds"] > 0 for r in backbone.values())
        assert backbone[("one epoch: cached features vs backbone every batch", "fp32")]["ratio"] > 0


def test_tiny_check_without_omegaconf_skips_the_model_with_a_reason(tmp_path: Path) -> None:
    result = run_blocked(tmp_path, ["av", "soundfile", "omegaconf"], "--configs", "demo")
    assert "training" not in result["sections"] and "extraction" not in result["sections"]
    assert len(result["sections"]["loss"]) == 3 and "faiss" in result["sections"]
    assert any("the library's model needs omegaconf" in n for n in result["notes"])
    assert any("backbones: skipped" in n for n in result["notes"])
