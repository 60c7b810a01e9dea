"""Two-process CPU DDP front-end training through the ``cmer frontend-train`` command line.

Lightning's ``ddp`` strategy on CPU starts the second rank by re-running the command, so the run is a
subprocess: this file run as a script, which wraps :func:`contrastive_mer.frontend.train.train_frontend` to save,
on each rank, the trained tensors (projectors and LoRA adapters), the base LLM's parameter digest before and after
training, the epoch logs and the world size, then calls ``contrastive_mer.cli.main.main(["frontend-train", ...])``.
The test checks that both ranks end with identical trained weights that moved from their initial values, that the
base LLM's digest is unchanged, that each epoch took ``ceil(rows / 2 / batch)`` steps per rank, and that the
files rank 0 wrote (state file, ``frontend.safetensors``, ``lora/``) hold those same weights.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
ROWS, BATCH, EPOCHS = 6, 2, 2


def _record_and_run(record_dir: Path, argv: list[str]) -> int:
    """Wrap ``train_frontend`` to save this rank's trained tensors and digests, then run ``cmer``."""
    import torch.distributed as dist

    from contrastive_mer.cli.main import main
    from contrastive_mer.frontend import train as train_mod
    from contrastive_mer.frontend.lora import parameter_digest

    original = train_mod.train_frontend

    def recording(front, llm, *args, **kwargs):
        before = parameter_digest(llm)
        initial = {k: v.clone() for k, v in front._saved_state().items()}
        front, llm, logs = original(front, llm, *args, **kwargs)
        rank = dist.get_rank() if dist.is_initialized() else -1
        torch.save({"weights": train_mod.trained_state(front, llm, lora=True), "initial": initial,
                    "digest_before": before, "digest_after": parameter_digest(llm),
                    "world": dist.get_world_size() if dist.is_initialized() else 1,
                    "logs": [vars(x) for x in logs]}, record_dir / f"rank{rank}.pt")
        return front, llm, logs

    train_mod.train_frontend = recording
    return main(argv)


@pytest.mark.slow  # two processes that each import torch and Lightning: about a minute on 2 CPU cores
def test_two_process_cpu_ddp_trains_identical_weights_on_both_ranks(tmp_path) -> None:
    from contrastive_mer.frontend.instructions import RowRecipe, store_instruction_rows, write_instructions
    from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, save_tiny_llm
    from contrastive_mer.store.hdf5 import FeatureStore
    from tests.frontend.test_generation import _store

    store_path = _store(tmp_path / "s.h5", n=ROWS)
    recipe = RowRecipe(tokens="<audio>", prompts=("{tokens} What emotion ?",), answers=("{emotion}",))
    with FeatureStore(store_path) as store:
        rows = write_instructions(tmp_path / "rows.jsonl", store_instruction_rows(store, recipe=recipe))
    llm = save_tiny_llm(tmp_path / "llm", TinyLLMConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                                        intermediate_size=16), ["What emotion ? happy sad"])
    run, records = tmp_path / "run", tmp_path / "records"
    records.mkdir()
    argv = ["frontend-train", "--features", str(store_path), "--instructions", str(rows), "--llm", str(llm),
            "--output", str(run), "--lora", "--lora-r", "2", "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
            "--lr", "0.01", "--no-chat", "--device", "cpu", "--devices", "2", "--strategy", "ddp",
            "level=feature", "fused=false", "tokens_per_modality=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, __file__, str(records), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert proc.stdout.count("epoch 1: loss") == 1, log  # printed by rank 0 only

    ranks = [torch.load(records / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2], log
    for r in ranks:
        assert r["digest_after"] == r["digest_before"]  # the base LLM did not move
        assert [x["steps"] for x in r["logs"]] == [math.ceil(ROWS / 2 / BATCH)] * EPOCHS
    assert ranks[0]["digest_before"] == ranks[1]["digest_before"]
    a, b = ranks[0]["weights"], ranks[1]["weights"]
    assert a.keys() == b.keys() and any(".lora_B" in k for k in a) and any(k.startswith("frontend.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)  # DDP averaged the gradients: the replicas stayed equal
    assert any(not torch.equal(a[f"frontend.{k}"], v) for k, v in ranks[0]["initial"].items())
    assert all(x["loss"] == y["loss"] for x, y in zip(ranks[0]["logs"], ranks[1]["logs"]))  # mean over ranks

    saved = torch.load(run / "train_state.pt", weights_only=True)
    assert saved["epoch"] == EPOCHS and saved["llm_digest"] == ranks[0]["digest_before"]
    assert saved["weights"].keys() == a.keys() and all(torch.equal(saved["weights"][k], a[k]) for k in a)
    from safetensors.torch import load_file

    projector = load_file(str(run / "frontend.safetensors"))
    front_keys = [k for k in a if k.startswith("frontend.")]
    assert all(k.removeprefix("frontend.") in projector for k in front_keys), sorted(projector)
    assert all(torch.equal(projector[k.removeprefix("frontend.")], a[k]) for k in front_keys)
    assert (run / "lora" / "adapter_config.json").is_file()


if __name__ == "__main__":
    sys.exit(_record_and_run(Path(sys.argv[1]), sys.argv[2:]))
