"""The paper's setup through the library: two-window batches, the ``two_window_supcon`` loss switch, and a
fast_dev_run of ``experiments/paper.yaml`` (synthetic corpus, four modalities) with tiny overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from contrastive_mer.config import ConfigError
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.data.sample import Batch
from contrastive_mer.data.windows import take_window
from contrastive_mer.experiment import load_config
from contrastive_mer.model.losses import two_window_pairwise_loss
from contrastive_mer.model.module import PairwiseContrastiveModule
from tests.conftest import fast_dev_run_changes

PAPER = Path(__file__).resolve().parents[2] / "experiments" / "paper.yaml"
#: tiny sizes for CPU tests; everything else (modalities, loss, windows, optimiser) is paper.yaml's
TINY = [
    "data.options.num_speakers=3", "data.options.speakers=[0,1,2]", "data.options.num_emotions=2",
    "data.options.clips_per_speaker_emotion=3", "data.options.frame_size=32", "data.options.max_seconds=1.2",
    "data.batch_size=4", "data.val_fraction=0.34",
    "model.modalities.audio.encoder_args={n_mels: 32, bottleneck: 8, hidden: 8, blocks: 2, repeats: 1, "
    "output_dim: 16, dropout: 0.1, output_prelu: true}",
    "model.modalities.video.encoder_args={output_dim: 16}",
    "model.modalities.video.preprocess.num_frames=4", "model.modalities.video.preprocess.size=32",
    "model.modalities.landmarks.encoder_args={hidden_channels: 8, spatial_channels: 4, node_dim: 2, "
    "output_dim: 16, graph: official65, self_loop_weight: 2.0, temporal_gate: sum}",
    "model.modalities.text.encoder_args={output_dim: 16, bert_hidden: 16, bert_layers: 1, bert_heads: 2, "
    "bert_intermediate: 32}",
    "model.head.hidden_dim=32", "model.head.output_dim=16", "trainer.max_epochs=1",
]


def _half(batch: Batch, rows: slice) -> Batch:
    pick = lambda d: {k: v[rows] for k, v in d.items()}  # noqa: E731
    return dataclasses.replace(batch, ids=batch.ids[rows], inputs=pick(batch.inputs), lengths=pick(batch.lengths),
                               present=pick(batch.present), labels=pick(batch.labels))


@pytest.fixture(scope="module")
def paper_setup():
    cfg = load_config(PAPER, TINY)
    pl.seed_everything(0)
    data = MERDataModule(cfg)
    data.setup("fit")
    return cfg, data


def test_paper_config_is_four_modalities_two_window_steplr():
    cfg = load_config(PAPER)
    assert list(cfg.model.modalities) == ["audio", "video", "landmarks", "text"]
    assert cfg.loss.name == "two_window_supcon" and cfg.data.two_window.frames > 0
    assert (cfg.optim.scheduler, cfg.optim.step_size, cfg.optim.gamma) == ("step", 100, 0.9)
    for name in ("paper_ravdess.yaml", "paper_mosei.yaml"):  # the real-corpus recipes load and validate
        other = load_config(PAPER.parent / name, ["data.root=/nonexistent"])
        assert other.loss.name == "two_window_supcon" and "landmarks" in other.model.modalities


def test_two_window_batch_holds_two_windows_of_each_clip(paper_setup):
    cfg, data = paper_setup
    batch = next(iter(data.train_dataloader()))
    b = cfg.data.batch_size
    assert len(batch) == 2 * b and batch.ids[:b] == batch.ids[b:]
    assert batch.inputs["landmarks"].shape[:2] == (2 * b, 20) and batch.inputs["audio"].shape[-1] == 90
    assert torch.equal(batch.lengths["landmarks"], torch.full((2 * b,), 20))
    by_id = {data.train_set.records[i].id: data.train_set[i] for i in range(len(data.train_set))}
    for row, clip in enumerate(batch.ids):  # each row is a contiguous 20-frame slice of its clip's landmarks
        full = by_id[clip].tensors["landmarks"]
        starts = [s for s in range(len(full) - 19) if torch.equal(full[s:s + 20], batch.inputs["landmarks"][row])]
        assert starts, f"row {row} is not a window of {clip}"
        # video is not windowed: both windows see the whole clip
        assert torch.equal(batch.inputs["video"][row, :len(by_id[clip].tensors["video"])], by_id[clip].tensors["video"])
    val = [next(iter(data.val_dataloader())) for _ in range(2)]  # validation windows are fixed per clip
    assert torch.equal(val[0].inputs["landmarks"], val[1].inputs["landmarks"])


def test_take_window_slices_and_wraps():
    x = torch.arange(10).view(1, 10)
    assert take_window(x, 1, 4, 0.0).tolist() == [[0, 1, 2, 3]] and take_window(x, 1, 4, 1.0).tolist() == [[6, 7, 8, 9]]
    assert take_window(x, 1, 4, 0.5).tolist() == [[3, 4, 5, 6]]
    assert take_window(torch.arange(3), 0, 7, 0.9).tolist() == [0, 1, 2, 0, 1, 2, 0]  # repeated from the start


@pytest.mark.parametrize("label", [None, "emotion"])
def test_module_loss_equals_two_window_pairwise_loss(paper_setup, label):
    cfg, data = paper_setup
    if label:
        cfg = load_config(PAPER, [*TINY, f"loss.label={label}"])
    torch.manual_seed(0)
    module = PairwiseContrastiveModule(cfg).eval()
    batch = next(iter(data.train_dataloader()))
    half = len(batch) // 2
    with torch.no_grad():
        got = module.compute_loss(batch)
        windows = [module.project(module.encode(_half(batch, rows))) for rows in (slice(0, half), slice(half, None))]
        emb = {m: torch.stack([windows[0][m], windows[1][m]], 1) for m in module.modalities}
        present = {m: batch.present[m][:half] & batch.present[m][half:] for m in module.modalities}
        labels = batch.labels["emotion"][:half] if label else None
        want = two_window_pairwise_loss(emb, present, temperature=0.07, labels=labels,
                                        count_offset=cfg.loss.count_offset)
    assert torch.allclose(got.loss, want.loss, atol=1e-5) and got.per_pair.keys() == want.per_pair.keys()
    assert len(want.per_pair) == 12  # 6 modality pairs, both directions
    for m in module.modalities:  # projections are unit vectors, windows differ
        assert torch.allclose(emb[m].norm(dim=-1), torch.ones(half, 2), atol=1e-5)
    assert not torch.allclose(F.normalize(emb["landmarks"][:, 0], dim=-1), emb["landmarks"][:, 1])


def test_fast_dev_run_of_the_four_modality_paper_config(paper_setup):
    cfg, data = paper_setup
    pl.seed_everything(0)
    module = PairwiseContrastiveModule(cfg)
    changed, trainer = fast_dev_run_changes(module, data)
    assert changed == {"audio", "video", "landmarks", "text"}, changed
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("overrides, fragment", [
    (["loss.name=two_window_supcon"], "needs two windows"),
    (["data.two_window.frames=10"], "needs loss.name=two_window_supcon"),
    (["loss.label=emotion"], "only for loss.name=two_window_supcon"),
    (["loss.name=supcon"], "unknown loss .supcon.; known: pairwise_infonce, two_window_supcon"),
    (["loss.name=two_window_supcon", "data.two_window.frames=5", "data.two_window.modality_frames.smell=3"],
     "no such modality"),
])
def test_loss_and_window_switches_are_checked(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(PAPER.parent / "demo.yaml", overrides)
