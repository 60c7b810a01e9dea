"""Pretraining end to end on the synthetic corpus: learning, fast_dev_run per encoder, checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytorch_lightning as pl
import torch

from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
from contrastive_mer.data.sample import Sample
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import PairwiseContrastiveModule, load_module
from contrastive_mer.pretrain.loop import pretrain
from tests.conftest import DEMO, ROOT, TINY, fast_dev_run_changes


@register_adapter("toy_vectors")
class ToyVectors(CorpusAdapter):
    """Two vector 'modalities' sharing a latent, plus audio: exercises the mlp and audio_cnn encoders."""

    name = "toy_vectors"
    modalities = ("au", "pose", "audio")

    def __init__(self, n: int = 24, seed: int = 0):
        super().__init__()
        self.n, self.seed = n, seed
        self.label_names = {"emotion": ["a", "b"]}

    def records(self):
        return [ClipRecord(f"toy{i}", {"au": i, "pose": i, "audio": i}, {"emotion": i % 2}, {"speaker": f"s{i % 3}"})
                for i in range(self.n)]

    def load(self, record, modalities):
        rng = np.random.default_rng(self.seed + int(record.id[3:]))
        z = rng.normal(size=4).astype(np.float32)
        inputs = {"au": np.tile(z, 3), "pose": np.concatenate([z, -z]),
                  "audio": (0.1 * rng.normal(size=8000)).astype(np.float32)}
        return Sample(record.id, {m: inputs[m] for m in modalities}, record.labels, record.groups)


def test_short_training_run_learns(tmp_path):
    """The total loss falls by >= 30% and in-batch cross-modal top-1 accuracy rises far above 1/B."""
    # the corpus default speaker variation: speaker identity is an easy shared factor, so the loss falls fast
    cfg = load_config(DEMO, TINY + ["trainer.max_epochs=15", "data.val_fraction=0", "optim.lr=0.003",
                                    "data.options.speaker_spread=1.0"])
    result = pretrain(cfg, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    first, last = history[0]["train/loss_epoch"], history[-1]["train/loss_epoch"]
    assert last <= 0.7 * first, (first, last)
    accuracies = [v for k, v in history[-1].items() if k.startswith("train/acc_")]
    assert len(accuracies) == 3 and min(accuracies) > 3 * (1 / cfg.data.batch_size)
    assert result.checkpoint.is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_validation_batches_are_mixed_and_fixed():
    """Validation batches mix speakers and emotions (records come sorted) and are identical every epoch."""
    cfg = load_config(DEMO, TINY + ["data.options.num_speakers=6", "data.options.speakers=null",
                                    "data.val_fraction=0.34"])
    data = MERDataModule(cfg)
    data.setup("fit")
    assert data.val_set is not None
    first = next(iter(data.val_dataloader()))
    assert len(first) == cfg.data.batch_size  # eval_batch_size unset: the training batch size
    assert len(set(first.groups["speaker"])) > 1 and len(set(first.labels["emotion"].tolist())) > 2
    again = [b.ids for b in data.val_dataloader()]
    assert again == [b.ids for b in data.val_dataloader()]
    val_speakers = {r.groups["speaker"] for r in data.val_set.records}
    assert sorted(i for ids in again for i in ids) == sorted(r.id for r in data.records
                                                            if r.groups["speaker"] in val_speakers)


def _fast_dev_run(cfg) -> None:
    pl.seed_everything(0)
    data = MERDataModule(cfg)
    module = PairwiseContrastiveModule(cfg)
    changed, _ = fast_dev_run_changes(module, data)
    assert changed == set(module.modalities), changed  # every encoder received a gradient step


def test_fast_dev_run_tcn_timm_hf_text():
    _fast_dev_run(load_config(DEMO, TINY))


def test_fast_dev_run_audio_cnn_and_mlp(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(textwrap.dedent("""
        data: {dataset: toy_vectors, batch_size: 6, val_fraction: 0.34}
        model:
          modalities:
            au: {encoder: mlp, encoder_args: {input_dim: 12, hidden_dims: [16], output_dim: 8}}
            pose: {encoder: mlp, encoder_args: {input_dim: 8, output_dim: 8}}
            audio: {encoder: audio_cnn, encoder_args: {n_mels: 32, channels: [4, 8], output_dim: 8}}
          head: {hidden_dim: 16, output_dim: 8}
        """))
    _fast_dev_run(load_config(path))


def test_checkpoint_loads_weights_only_and_reproduces_outputs(tmp_path):
    cfg = load_config(DEMO, TINY)
    result = pretrain(cfg, tmp_path / "run")
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)  # no code execution
    assert "state_dict" in state and "hyper_parameters" in state
    module = load_module(str(result.checkpoint))
    data = MERDataModule(cfg)
    data.setup()
    batch = next(iter(data.val_dataloader()))
    trained = PairwiseContrastiveModule(cfg)
    trained.load_state_dict(state["state_dict"])
    with torch.no_grad():
        a = module.eval()(batch)[1]
        b = trained.eval()(batch)[1]
    for m in a:
        torch.testing.assert_close(a[m], b[m])


RESUME_SCRIPT = """
import sys, time
import pytorch_lightning as pl
from contrastive_mer.experiment import load_config
from contrastive_mer.pretrain.loop import pretrain

class SlowAfterFirstEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch >= 1:
            time.sleep(30)   # the test kills us here, after epoch 0's checkpoint

cfg = load_config(sys.argv[1], sys.argv[3:])
pretrain(cfg, sys.argv[2], extra_callbacks=[SlowAfterFirstEpoch()])
"""


def test_killed_run_resumes_to_the_same_step_count(tmp_path):
    overrides = TINY + ["trainer.max_epochs=3"]
    script = tmp_path / "slow_pretrain.py"
    script.write_text(RESUME_SCRIPT)
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(DEMO), str(run_dir), *overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # let the atomic checkpoint write finish
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # it really was killed mid-run
    killed_state = torch.load(last, map_location="cpu", weights_only=True)
    assert killed_state["epoch"] == 0

    resumed = pretrain(load_config(run_dir / "config.yaml"), run_dir, resume=True)
    straight = pretrain(load_config(DEMO, overrides), tmp_path / "straight")
    resumed_state = torch.load(resumed.checkpoint, map_location="cpu", weights_only=True)
    straight_state = torch.load(straight.checkpoint, map_location="cpu", weights_only=True)
    assert resumed_state["global_step"] == straight_state["global_step"] > killed_state["global_step"]
    assert resumed_state["epoch"] == straight_state["epoch"] == 2
