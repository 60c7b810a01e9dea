"""The run folder (issue 12 items 3-5): no silent overwrite, extending a finished run, the data summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl

from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.errors import UserError
from contrastive_mer.experiment import load_config
from contrastive_mer.pretrain.loop import pretrain
from tests.conftest import DEMO, TINY, cli_error

COSINE = TINY + ["optim.scheduler=cosine", "optim.lr=0.01", "optim.name=sgd", "data.options.speakers=[0,1]",
                 "data.val_fraction=0.5"]


class LearningRates(pl.Callback):
    """The learning rate each epoch trains at."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_existing_run_is_refused_without_resume_or_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    pretrain(load_config(DEMO, COSINE), run)
    (run / "checkpoints" / "best-999.ckpt").write_bytes(b"stale")  # what an earlier, longer run would leave
    line = cli_error("pretrain", "--config", str(DEMO), "--output", str(run), *COSINE)
    assert str(run) in line and "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert "--resume" in cli_error("pretrain", "--config", str(DEMO), "--output", str(run), "--resume", "--overwrite")
    before = sorted((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(before) == 1
    pretrain(load_config(DEMO, COSINE), run, overwrite=True)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["best-000.ckpt", "last.ckpt"]
    after = sorted((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(after) == 1 and after != before  # one fresh event file, not two runs mixed
    assert len(json.loads((run / "history.json").read_text())) == 1
    # an empty folder (or a new one) needs neither flag
    (tmp_path / "empty").mkdir()
    pretrain(load_config(DEMO, COSINE), tmp_path / "empty")


def test_extending_a_finished_cosine_run_continues_the_schedule(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """1 epoch, then --resume with max_epochs=3: epochs 2 and 3 train at the 3-epoch cosine's rates, not at 0."""
    run = tmp_path / "run"
    pretrain(load_config(DEMO, COSINE), run)
    with pytest.raises(UserError, match=r"already trained 1 epoch.*trainer.max_epochs=N with N > 1"):
        pretrain(load_config(run / "config.yaml"), run, resume=True)
    capsys.readouterr()
    lrs = LearningRates()
    pretrain(load_config(run / "config.yaml", ["trainer.max_epochs=3"]), run, resume=True, extra_callbacks=[lrs])
    base = 0.01
    expected = [base * (1 + math.cos(math.pi * e / 3)) / 2 for e in (1, 2)]  # closed-form cosine, T_max = 3
    assert lrs.lrs == pytest.approx(expected)
    err = capsys.readouterr().err
    assert "warning: resumed with trainer.max_epochs=3" in err and "now spans 3" in err
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    losses = [h["val/loss"] for h in history]
    assert losses[1] != losses[0] and losses[2] != losses[1]  # the weights moved in every epoch


def test_extending_with_warmup(tmp_path: Path) -> None:
    """With a warmup SequentialLR the cosine inside it is stretched the same way."""
    run = tmp_path / "run"
    cfg = COSINE + ["optim.warmup_epochs=1", "trainer.max_epochs=2"]
    pretrain(load_config(DEMO, cfg), run)
    lrs = LearningRates()
    pretrain(load_config(run / "config.yaml", ["trainer.max_epochs=4"]), run, resume=True, extra_callbacks=[lrs])
    # cosine over 4 - 1 = 3 epochs after one warmup epoch; epoch 2 is cosine step 1, epoch 3 step 2
    assert lrs.lrs == pytest.approx([0.01 * (1 + math.cos(math.pi * e / 3)) / 2 for e in (1, 2)])


def test_data_summary_and_split_are_saved(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    cfg = load_config(DEMO, TINY + ["data.options.speakers=null"])
    pretrain(cfg, run)
    out = capsys.readouterr().out
    summary = json.loads((run / "data_summary.json").read_text())
    split = json.loads((run / "split.json").read_text())
    data = MERDataModule(cfg)
    data.setup()
    # reference: count from the records directly
    train = [r for r in data.records if r.id in set(split["train"])]
    val = [r for r in data.records if r.id in set(split["val"])]
    assert len(train) + len(val) == len(data.records) and not set(split["train"]) & set(split["val"])
    assert {r.groups["speaker"] for r in train}.isdisjoint({r.groups["speaker"] for r in val})
    assert summary["clips"] == {"train": len(train), "val": len(val)}
    for m in cfg.model.modalities:
        assert summary["modalities"][m] == {"train": sum(m in r.sources for r in train),
                                            "val": sum(m in r.sources for r in val)}
    assert summary["groups"]["val"] == sorted({r.groups["speaker"] for r in val})
    assert split["split_group"] == "speaker" and split["seed"] == cfg.seed
    assert "[cmer] data: synthetic" in out and "val speakers: " + ", ".join(summary["groups"]["val"]) in out
    assert summary["warnings"] == []
    # training you can see: embedding histograms and pictures in TensorBoard and the run folder, no hp_metric
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {f"embeddings/{v}" for v in ("audio", "video", "text", "fused")} <= set(tags["histograms"])
    assert {"embeddings/embedding_map", "embeddings/similarity"} <= set(tags["images"])
    assert "hp_metric" not in tags["scalars"]
    for name in ("embedding_map", "similarity"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 1000


def test_summary_warns_when_a_modality_has_no_training_clip() -> None:
    """The CREMA-D case: the only speaker with video lands in validation."""
    from contrastive_mer.data.datasets.base import ClipRecord
    from contrastive_mer.data.summary import data_summary, format_summary

    def clip(i: int, spk: str, video: bool) -> ClipRecord:
        return ClipRecord(f"c{i}", {"wav": "a.wav", **({"mp4": "v.mp4"} if video else {})}, {}, {"speaker": spk})

    train = [clip(i, f"s{i % 3}", False) for i in range(30)] + [clip(30, "s0", True)]
    val = [clip(40 + i, "s9", True) for i in range(5)]
    s = data_summary({"train": train[:30], "val": val}, {"audio": "wav", "video": "mp4"}, "speaker", 8)
    assert s["modalities"] == {"audio": {"train": 30, "val": 5}, "video": {"train": 0, "val": 5}}
    assert s["groups"] == {"train": ["s0", "s1", "s2"], "val": ["s9"]}
    assert len(s["warnings"]) == 1 and "modality 'video' has no training clip" in s["warnings"][0]
    assert "val: 5" in s["warnings"][0]
    # one training clip of 31 with video: 8/31 per batch < 2 -> the few-per-batch warning
    s = data_summary({"train": train, "val": val}, {"audio": "wav", "video": "mp4"}, "speaker", 8)
    assert len(s["warnings"]) == 1 and "1 of 31 training clips, about 0.3 per batch of 8" in s["warnings"][0]
    text = format_summary(s, "title")
    assert text.splitlines()[0] == "title" and "val speakers: s9" in text
    assert [ln.split() for ln in text.splitlines()[1:5]] == [["train", "val"], ["clips", "31", "5"],
                                                             ["audio", "31", "5"], ["video", "1", "5"]]


def test_pca_map_matches_sklearn() -> None:
    """The 2-D map is PCA: the same scores as sklearn's, up to the sign of each component."""
    import numpy as np
    from sklearn.decomposition import PCA

    from contrastive_mer.pretrain.figures import pca_2d

    x = np.random.default_rng(0).normal(size=(50, 6)) * np.array([5, 3, 1, 1, 1, 1])
    ours, ref = pca_2d(x), PCA(2).fit_transform(x)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-6, atol=1e-9)
    assert pca_2d(x[:, :1]).shape == (50, 2)


def test_piped_log_has_one_line_per_epoch_and_no_library_noise(tmp_path: Path) -> None:
    """What a non-terminal log shows: the data summary, one line per epoch with losses, lr and clips/s."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", "pretrain", "--config", str(DEMO),
                          "--output", str(run), *TINY, "trainer.max_epochs=2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    log = res.stdout + res.stderr
    lines = [ln for ln in log.splitlines() if ln.startswith("[cmer] epoch ")]
    assert [ln.split()[2] for ln in lines] == ["1/2", "2/2"], log
    for ln in lines:
        assert "train loss" in ln and "val loss" in ln and " lr " in ln and "clips/s" in ln and "data " in ln
    assert "[cmer] data: synthetic" in log
    assert "litlogger" not in log and "limit_train_batches" not in log
    history = json.loads((run / "history.json").read_text())
    for h in history:
        assert h["time/samples_per_sec"] > 0 and 0 <= h["time/data_share"] <= 1
        assert f"{h['train/loss_epoch']:.3f}" in lines[h["epoch"]]


def test_face_crop_fallbacks_are_reported(capsys: pytest.CaptureFixture) -> None:
    from types import SimpleNamespace

    from contrastive_mer.pretrain.loop import report_face_fallbacks

    adapter = SimpleNamespace(cropper=SimpleNamespace(calls=40, fallbacks=6))
    assert report_face_fallbacks(adapter) == {"frames": 40, "fallbacks": 6}
    assert "no face found in 6 of 40 frames (15.0%)" in capsys.readouterr().out
    assert report_face_fallbacks(SimpleNamespace(cropper=None)) is None
    assert report_face_fallbacks(SimpleNamespace(cropper=SimpleNamespace(calls=0, fallbacks=0))) is None
