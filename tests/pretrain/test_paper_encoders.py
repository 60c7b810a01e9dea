"""The paper's encoders (r2plus1d, stgcn, seq_transformer) train through the library's data path and module.

A toy adapter emits face-crop frames, flattened landmark sequences ``(T, 102)`` and word-vector sequences; one
fast_dev_run step must update every encoder."""

from __future__ import annotations

import textwrap

import numpy as np
import pytorch_lightning as pl

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
