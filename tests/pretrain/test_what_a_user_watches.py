"""Issue 22 item 14: the terminal progress bar counts epochs from 1 like the log lines, the learning rate is
logged at every step (not every ``trainer.log_every_n_steps``, and also with a per-epoch cosine schedule), and the
online probe warns when validation holds fewer than 2 clips of a class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.pretrain.online_probe import OnlineProbeCallback, thin_classes
from contrastive_mer.pretrain.online_probe_rows import ProbeRows


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_bar_counts_epochs_from_one_and_lr_is_logged_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import contrastive_mer.pretrain.loop as loop
    from contrastive_mer.experiment import load_config
    from tests.cli.test_faults import feature_corpus, feature_overrides

    manifest = feature_corpus(tmp_path / "corpus", 24)
    monkeypatch.setattr(loop, "interactive_output", lambda: True)  # as in a terminal: a bar is drawn
    cfg = load_config(None, feature_overrides(manifest) + [
        "trainer.max_epochs=2", "trainer.enable_progress_bar=true", "trainer.log_every_n_steps=50",
        "optim.scheduler=cosine", "optim.warmup_epochs=0", "optim.lr=0.01"])
    loop.pretrain(cfg, tmp_path / "run")
    captured = capsys.readouterr()
    bar = captured.out + captured.err
    assert "Epoch 1/2" in bar and "Epoch 2/2" in bar
    assert "Epoch 0" not in bar
    scalars = _scalars(tmp_path / "run")
    assert [t for t in scalars if t.startswith("lr-")] == ["lr-SGD"]
    lrs = scalars["lr-SGD"]
    assert [step for step, _ in lrs] == list(range(6))  # 24 clips / batch 8 = 3 steps per epoch, 2 epochs
    values = [v for _, v in lrs]
    assert values[:3] == pytest.approx([0.01] * 3) and values[3] < values[0]  # the rate each step trained at


def test_thin_classes_against_a_plain_count() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2, -1, 3])
    assert thin_classes(labels) == {1: 1, 3: 1}
    assert thin_classes(labels, num_classes=6) == {1: 1, 3: 1, 4: 0, 5: 0}
    assert thin_classes(np.array([0.5, 1.0])) == {} and thin_classes(np.zeros((3, 2), np.int64)) == {}


def test_online_probe_warns_when_validation_has_under_two_clips_of_a_class(
        capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 8 + [1] * 8 + [2])  # 'sad' has one validation clip
    n = len(labels)
    rows = ProbeRows([f"c{i:02d}" for i in range(n)], {"audio": rng.normal(size=(n, 4)).astype(np.float32)},
                     {"audio": np.ones(n, bool)}, labels, [f"s{i % 4}" for i in range(n)])
    callback = OnlineProbeCallback(1)
    scores = callback.probe(rows, 4, epoch=1, class_names=["happy", "angry", "sad", "calm"])
    err = capsys.readouterr().err
    assert "fewer than 2 clips of class(es) sad (1), calm (0) among its 17 probed clips" in err
    assert scores  # a warning, not a refusal: the probe still runs
    even = ProbeRows(rows.ids[:16], {"audio": rows.features["audio"][:16]}, {"audio": np.ones(16, bool)},
                     labels[:16], rows.groups[:16])
    callback.probe(even, 2, epoch=2, class_names=["happy", "angry"])
    assert "fewer than 2 clips" not in capsys.readouterr().err
