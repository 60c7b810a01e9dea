"""The projector-only instruction-tuning example, shrunk: a tiny encoder checkpoint, 3 speakers, a few epochs."""

from __future__ import annotations

import importlib.util
import json

import torch

from contrastive_mer.frontend import FrontEnd
from tests.fixtures.frontend import REPO, save_checkpoint


def load_example():
    spec = importlib.util.spec_from_file_location("mllm_frontend", REPO / "experiments" / "mllm_frontend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_training_beats_zeroed_tokens_on_held_out_speaker(tmp_path):
    ckpt = save_checkpoint(tmp_path / "enc.ckpt", seed=0)
    out = tmp_path / "run"
    example = load_example()
    torch.manual_seed(0)
    assert example.main(["--checkpoint", str(ckpt), "--out", str(out), "data.options.num_speakers=3",
                         "train.held_out_speakers=[2]", "train.epochs=6", "train.batch_size=6", "train.lr=0.01",
                         "llm.hidden_size=32", "llm.intermediate_size=64", "frontend.tokens_per_modality=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] == 12 and metrics["n_test"] == 6
    assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"]
    assert metrics["held_out_loss"] < metrics["held_out_loss_untrained"]
    assert metrics["held_out_loss"] < metrics["held_out_loss_zeroed_tokens"]
    assert len(metrics["generated"]) == 4
    # the saved projectors reload against the same encoder checkpoint
    front = FrontEnd.load(out / "frontend.safetensors", encoder_ckpt=ckpt)
    assert front.config.llm_hidden == 32 and front.config.tokens_per_modality == 2
