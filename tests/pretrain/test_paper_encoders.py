"""The paper's encoders (r2plus1d, stgcn, seq_transformer) train through the library's data path and module.

A toy adapter emits face-crop frames, flattened landmark sequences ``(T, 102)`` and word-vector sequences; one
fast_dev_run step must update every encoder. The same for ``experiments/paper_ravdess.yaml`` and
``paper_mosei.yaml`` (every setting but the data and the encoder sizes kept) on toy inputs of their shapes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
from contrastive_mer.data.landmarks import flatten_landmarks, minmax_normalize
from contrastive_mer.data.sample import Sample
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import PairwiseContrastiveModule
from tests.conftest import fast_dev_run_changes


@register_adapter("toy_paper_modalities")
class ToyPaperModalities(CorpusAdapter):
    """Clips of varying length with video frames, 51-point landmarks and 12-d word vectors."""

    name = "toy_paper_modalities"
    modalities = ("video", "landmarks", "words")

    def __init__(self, n: int = 12, seed: int = 0):
        super().__init__()
        self.n, self.seed = n, seed
        self.label_names = {"emotion": ["a", "b"]}

    def records(self):
        return [ClipRecord(f"clip{i}", {m: i for m in self.modalities}, {"emotion": i % 2}, {"speaker": f"s{i % 3}"})
                for i in range(self.n)]

    def load(self, record, modalities):
        i = int(record.id[4:])
        rng = np.random.default_rng(self.seed + i)
        steps = 6 + i % 4
        points = minmax_normalize(rng.normal(size=(steps, 51, 2)))
        inputs = {"video": rng.integers(0, 255, size=(steps, 40, 40, 3), dtype=np.uint8),
                  "landmarks": flatten_landmarks(points).astype(np.float32),
                  "words": rng.normal(size=(steps - 2, 12)).astype(np.float32)}
        return Sample(record.id, {m: inputs[m] for m in modalities}, record.labels, record.groups)


def test_fast_dev_run_r2plus1d_stgcn_seq_transformer(tmp_path):
    path = tmp_path / "paper_toy.yaml"
    path.write_text(textwrap.dedent("""
        data: {dataset: toy_paper_modalities, batch_size: 4, val_fraction: 0.34}
        model:
          modalities:
            video:
              encoder: r2plus1d
              encoder_args: {output_dim: 8}
              preprocess: {num_frames: 4, size: 32, mean: [0.43216, 0.394666, 0.37645],
                           std: [0.22803, 0.22145, 0.216989]}
            landmarks:
              encoder: stgcn
              encoder_args: {hidden_channels: 8, spatial_channels: 4, node_dim: 2, output_dim: 8}
              preprocess: {sequence: true}
            words:
              encoder: seq_transformer
              encoder_args: {input_dim: 12, d_model: 12, heads: 2, layers: 1, dim_feedforward: 16, output_dim: 8}
              preprocess: {sequence: true}
          head: {hidden_dim: 16, output_dim: 8}
        """))
    cfg = load_config(path)
    pl.seed_everything(0)
    data = MERDataModule(cfg)
    module = PairwiseContrastiveModule(cfg)
    changed, trainer = fast_dev_run_changes(module, data)
    assert changed == {"video", "landmarks", "words"}, changed


@register_adapter("toy_paper_corpus")
class ToyPaperCorpus(CorpusAdapter):
    """The inputs of ``experiments/paper_ravdess.yaml`` (waveform audio, landmarks) or ``paper_mosei.yaml``
    (COVAREP-like audio frames, FACET-like video frames, landmarks, GloVe-like word vectors), tiny."""

    name = "toy_paper_corpus"

    def __init__(self, corpus: str = "ravdess", n: int = 12, seed: int = 0):
        super().__init__()
        self.corpus, self.n, self.seed = corpus, n, seed
        self.modalities = ("audio", "landmarks") if corpus == "ravdess" else ("audio", "video", "landmarks", "text")
        self.label_names = {"emotion": ["a", "b"]}

    def records(self):
        return [ClipRecord(f"clip{i}", {m: i for m in self.modalities}, {"emotion": i % 2}, {"speaker": f"s{i % 3}"})
                for i in range(self.n)]

    def load(self, record, modalities):
        i = int(record.id[4:])
        rng = np.random.default_rng(self.seed + i)
        steps = 10 + i % 4
        inputs = {"landmarks": flatten_landmarks(minmax_normalize(rng.normal(size=(steps, 51, 2)))).astype(np.float32)}
        if self.corpus == "ravdess":
            inputs["audio"] = (0.1 * rng.normal(size=4000 + 400 * (i % 3))).astype(np.float32)
        else:
            inputs.update(audio=rng.normal(size=(3 * steps, 74)).astype(np.float32),
                          video=rng.normal(size=(steps, 35)).astype(np.float32),
                          text=rng.normal(size=(steps - 3, 300)).astype(np.float32))
        return Sample(record.id, {m: inputs[m] for m in modalities}, record.labels, record.groups)


PAPER_DIR = Path(__file__).resolve().parents[2] / "experiments"
#: shrink the encoders of the real-corpus paper configs, keeping every other setting (loss, dropout, graph, dB)
SHRINK = {
    "tcn": {"n_mels": 16, "bottleneck": 8, "hidden": 8, "blocks": 2, "repeats": 1, "output_dim": 8},
    "stgcn": {"hidden_channels": 8, "spatial_channels": 4, "node_dim": 2, "output_dim": 8},
    "mlp": {"hidden_dims": [8], "output_dim": 8},
    "seq_transformer": {"layers": 1, "dim_feedforward": 16, "output_dim": 8},
}


@pytest.mark.parametrize("name, corpus", [("paper_ravdess", "ravdess"), ("paper_mosei", "mosei")])
def test_fast_dev_run_of_the_real_corpus_paper_configs_updates_every_encoder(tmp_path, name, corpus):
    raw = yaml.safe_load((PAPER_DIR / f"{name}.yaml").read_text())
    raw["data"] = {**{k: v for k, v in raw["data"].items() if k in ("two_window", "split_group")},
                   "dataset": "toy_paper_corpus", "options": {"corpus": corpus}, "batch_size": 4,
                   "val_fraction": 0.34, "two_window": {"frames": 6, "modality_frames": {
                       m: 6 for m in raw["data"]["two_window"].get("modality_frames", {})}}}
    for spec in raw["model"]["modalities"].values():
        spec["encoder_args"].update(SHRINK[spec["encoder"]])
        if spec["encoder"] == "tcn":
            spec["preprocess"].update(n_mels=16, n_fft=400)
    raw["model"]["head"] = {"hidden_dim": 16, "output_dim": 8}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.loss.count_offset == 1 and cfg.model.feature_dropout == 0.1
    pl.seed_everything(0)
    data = MERDataModule(cfg)
    module = PairwiseContrastiveModule(cfg)
    assert module.encoders["landmarks"].a_hat.shape == (51, 51)
    changed, trainer = fast_dev_run_changes(module, data)
    assert changed == set(cfg.model.modalities), changed
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
