"""A kind registered from outside the package works end to end, with no other file edited: config validation,
preprocessor building, the dataset, per-speaker normalisation, two-window lengths, raw baselines, the front end
(a file path) and the encoders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contrastive_mer.config import ConfigError, TwoWindowConfig
from contrastive_mer.data.datamodule import build_preprocessors
from contrastive_mer.data.dataset import MERDataset, PreparedSample
from contrastive_mer.data.datasets.synthetic import SyntheticCorpus
from contrastive_mer.data.kinds import INPUT_KINDS, InputKind
from contrastive_mer.data.transforms import Preprocessor
from contrastive_mer.data.windows import window_lengths
from contrastive_mer.evaluation.baselines import compute_raw_features
from contrastive_mer.experiment import load_config
from contrastive_mer.frontend.sources import prepare_batch
from tests.conftest import DEMO, TINY


# ------------------------------------------------------------------ the whole new kind: one class pair, one call
@dataclass
class Vector2xConfig:
    input_dim: int = 35


class Vector2x(Preprocessor):
    """A frame sequence ``(T, D)`` -> twice its mean over time ``(D,)``."""

    kind = "vector2x"
    has_time = False

    def __init__(self, cfg: Vector2xConfig):
        self.cfg = cfg

    def __call__(self, raw: Any) -> torch.Tensor:
        return 2 * torch.as_tensor(np.asarray(raw, dtype=np.float32)).mean(0)

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.cfg.input_dim)


class Vector2xKind(InputKind):
    name = "vector2x"
    config_cls = Vector2xConfig
    preprocessor_cls = Vector2x
    produces = "vector"
    derived = {"input_dim": "input_dim"}
    standardisable = True

    def to_rows(self, prep: Preprocessor, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[None]

    def from_rows(self, prep: Preprocessor, rows: torch.Tensor) -> torch.Tensor:
        return rows[0]

    def baseline(self, prep: Preprocessor, tensor: torch.Tensor) -> np.ndarray:
        return tensor.numpy()

    def decode_path(self, prep: Preprocessor, path: Path) -> Any:
        return np.load(path)


@pytest.fixture
def vector2x(monkeypatch):
    """Registered for one test (``INPUT_KINDS.register("vector2x", Vector2xKind())`` in a user's module)."""
    monkeypatch.setitem(INPUT_KINDS._entries, "vector2x", Vector2xKind())


OVERRIDES = TINY + ["data.options.modalities=[video,audio,text,landmarks]", "model.modalities.lm.encoder=mlp",
                    "model.modalities.lm.encoder_args.input_dim=102", "model.modalities.lm.encoder_args.output_dim=32",
                    "model.modalities.lm.input=vector2x", "model.modalities.lm.source=landmarks",
                    "data.normalize.lm=speaker"]


def test_unregistered_kind_is_refused():
    with pytest.raises(ConfigError, match=r"model\.modalities\.lm\.input: unknown preprocessor kind 'vector2x'"):
        load_config(DEMO, OVERRIDES)


def test_new_kind_end_to_end(vector2x, tmp_path):
    cfg = load_config(DEMO, OVERRIDES)
    preps = build_preprocessors(cfg)
    lm = preps["lm"]
    assert isinstance(lm, Vector2x) and lm.source == "landmarks" and lm.cfg.input_dim == 102  # derived

    corpus = SyntheticCorpus(num_speakers=3, num_emotions=2, clips_per_speaker_emotion=2, missing_fraction=0.0,
                             modalities=("audio", "landmarks"), landmark_frames=6)
    plain = MERDataset(corpus, corpus.records(), {"lm": lm}, cache="memory")
    normed = MERDataset(corpus, corpus.records(), {"lm": lm}, cache="memory", normalize={"lm": "speaker"})
    items = [plain[i] for i in range(len(plain))]
    assert all(isinstance(s, PreparedSample) for s in items)
    x = np.stack([s.tensors["lm"].numpy() for s in items])  # type: ignore[union-attr]
    speakers = np.array([s.groups["speaker"] for s in items])  # type: ignore[union-attr]
    got = np.stack([normed[i].tensors["lm"].numpy() for i in range(len(normed))])  # type: ignore[union-attr]
    for g in np.unique(speakers):
        rows = x[speakers == g]
        mean, std = rows.mean(0), rows.std(0)
        want = np.where(std > 1e-6, (rows - mean) / np.where(std > 1e-6, std, 1.0), 0.0)
        np.testing.assert_allclose(got[speakers == g], want, atol=1e-4)

    np.testing.assert_array_equal(compute_raw_features(plain).features["lm"], x)
    assert window_lengths(TwoWindowConfig(frames=4), preps)["lm"] == 0

    seq = np.random.default_rng(0).normal(size=(5, 102)).astype(np.float32)
    np.save(tmp_path / "clip.npy", seq)
    batch = prepare_batch(preps, [{"lm": tmp_path / "clip.npy", "text": "a happy day"}])
    np.testing.assert_allclose(batch.inputs["lm"][0].numpy(), 2 * seq.mean(0), atol=1e-6)

    from contrastive_mer.model.module import PairwiseContrastiveModule

    with torch.no_grad():
        out = PairwiseContrastiveModule(cfg).encode(batch)
    assert out["lm"].feature.shape == (1, 32)
