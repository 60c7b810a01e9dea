"""The online probe: its scores equal direct probe calls on the same frozen features, it leaves training
unchanged, it chooses the best checkpoint only when asked, and it is refused where it cannot run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from contrastive_mer.config import ConfigError
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.data.splits import group_train_val_split
from contrastive_mer.evaluation.knn import knn_probe
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import load_module
from contrastive_mer.pretrain.loop import pretrain
from contrastive_mer.pretrain.online_probe import probe_split
from tests.conftest import DEMO, TINY

# four speakers, two of them validate: the probe split is one speaker against the other
RUN = TINY + ["data.options.speakers=[0,1,2,3]", "data.val_fraction=0.5", "trainer.max_epochs=2",
             "data.options.clips_per_speaker_emotion=2"]
PROBE = ["monitor.online_probe.every_n_epochs=1", "monitor.online_probe.weight_decays=[0.01,1.0]"]


def _reference(cfg, checkpoint: str) -> dict[str, float]:
    """The probes called directly on the validation features of the checkpoint (naive fused concatenation), rows
    sorted by clip id (the probe's order, the same in one process and under DDP)."""
    module = load_module(checkpoint)
    data = MERDataModule(cfg)
    data.setup("fit")
    feats: dict[str, list[np.ndarray]] = {}
    present: dict[str, list[np.ndarray]] = {}
    labels, groups, ids = [], [], []
    with torch.no_grad():
        for batch in data.val_dataloader():
            for m, out in module.encode(batch).items():
                feats.setdefault(m, []).append(out.feature.numpy())
                present.setdefault(m, []).append(batch.present[m].numpy())
            labels.append(batch.labels["emotion"].numpy())
            groups += list(batch.groups["speaker"])
            ids += list(batch.ids)
    order = np.argsort(ids)
    assert len(set(ids)) == len(ids) and order.tolist() != list(range(len(ids)))  # the loader order differs
    X = {m: np.concatenate(v)[order] for m, v in feats.items()}
    usable = {m: np.concatenate(v)[order] for m, v in present.items()}
    assert not all(u.all() for u in usable.values())  # the corpus drops some modalities of some clips
    X["fused"] = np.concatenate([np.where(usable[m][:, None], X[m], 0.0) for m in sorted(feats)], axis=1)
    usable["fused"] = np.any([usable[m] for m in feats], axis=0)
    y, g = np.concatenate(labels)[order], np.asarray(groups)[order]
    assert len(set(groups)) == 2
    tr, te = group_train_val_split(g, 0.5, cfg.seed)
    classes = len(data.adapter.label_names["emotion"])
    lin = LinearProbeConfig(seed=cfg.seed, weight_decays=(0.01, 1.0))
    out = {}
    for view, x in X.items():
        tr_v, te_v = tr[usable[view][tr]], te[usable[view][te]]
        prefix = "online_probe" if view == "fused" else f"online_probe/{view}"
        fit = linear_probe(x[tr_v], y[tr_v], x[te_v], y[te_v], lin, num_classes=classes)
        out[f"{prefix}/linear_acc"] = fit.metrics["accuracy"]
        knn = knn_probe(x[tr_v], y[tr_v], x[te_v], y[te_v], num_classes=classes)
        out[f"{prefix}/knn_acc"] = knn.metrics["accuracy"]
    return out


def test_online_probe_matches_direct_probes_and_leaves_training_unchanged(tmp_path, capsys):
    cfg = load_config(DEMO, RUN + PROBE + ["monitor.checkpoint=online_probe/linear_acc"])
    probed = pretrain(cfg, tmp_path / "probe")
    log = capsys.readouterr().out
    history = json.loads((tmp_path / "probe" / "history.json").read_text())
    last = history[-1]
    expected = _reference(cfg, str(probed.checkpoint))  # last.ckpt: the weights the last validation saw
    assert {k: v for k, v in last.items() if k.startswith("online_probe")} == pytest.approx(expected, abs=1e-6)
    assert len(expected) == 8 and "probe knn_acc" in log  # per-epoch line
    events = list((tmp_path / "probe" / "tensorboard").glob("events.out.tfevents.*"))
    assert any(b"online_probe/linear_acc" in e.read_bytes() for e in events)
    # best-*.ckpt chosen by the probe (asked for): the first epoch with the highest linear accuracy
    scores = [h["online_probe/linear_acc"] for h in history]
    assert probed.best_checkpoint is not None
    assert probed.best_checkpoint.name == f"best-{int(np.argmax(scores)):03d}.ckpt"

    plain = pretrain(load_config(DEMO, RUN), tmp_path / "plain")
    plain_history = json.loads((tmp_path / "plain" / "history.json").read_text())
    for with_probe, without in zip(history, plain_history, strict=True):
        for key in ("train/loss_epoch", "val/loss"):
            assert with_probe[key] == without[key], key  # same seed, same losses to the last digit
        assert not any(k.startswith("online_probe") for k in without)
    losses = [h["val/loss"] for h in plain_history]  # the default: best by validation loss, labels unused
    assert plain.best_checkpoint is not None
    assert plain.best_checkpoint.name == f"best-{int(np.argmin(losses)):03d}.ckpt"


def test_probe_split_by_group_else_stratified():
    y = np.repeat(np.arange(3), 6)
    tr, te, how = probe_split(y, np.array(["a"] * 9 + ["b"] * 9), seed=0)
    assert how == "group" and {y.tolist()[i] for i in tr} and set(tr) | set(te) == set(range(18))
    assert len({"a" if i < 9 else "b" for i in tr}) == 1 and len({"a" if i < 9 else "b" for i in te}) == 1
    tr, te, how = probe_split(y, np.array(["a"] * 18), seed=0)
    assert how == "stratified" and not set(tr) & set(te) and len(tr) + len(te) == 18
    assert np.bincount(y[te]).tolist() == [3, 3, 3] and np.bincount(y[tr]).tolist() == [3, 3, 3]
    tr2, te2, _ = probe_split(y, None, seed=0)
    assert tr2.tolist() == tr.tolist() and te2.tolist() == te.tolist()  # seeded: the same split every epoch


@pytest.mark.parametrize("overrides, message", [
    (["monitor.checkpoint=online_probe/linear_acc"], "needs the online probe"),
    (["monitor.online_probe.every_n_epochs=3", "trainer.check_val_every_n_epoch=2"], "multiple of"),
    (["monitor.online_probe.every_n_epochs=-1"], "every_n_epochs"),
    (["monitor.checkpoint_mode=up"], "checkpoint_mode"),
])
def test_bad_monitor_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DEMO, TINY + overrides)


def test_online_probe_is_off_by_default():
    cfg = load_config(DEMO, TINY)
    assert cfg.monitor.online_probe.every_n_epochs == 0 and cfg.monitor.checkpoint is None


def test_two_window_batches_give_each_clip_once():
    """A two-window batch holds every clip twice (window 0, then window 1): the probe takes window 0 once per clip,
    and a clip seen in an earlier batch is not taken again."""
    from types import SimpleNamespace

    from contrastive_mer.data.sample import Batch
    from contrastive_mer.pretrain.online_probe import OnlineProbeCallback

    feats = torch.arange(12, dtype=torch.float32).reshape(6, 2)  # rows: a0 b0 c0 a1 b1 c1

    class Encoder:
        def encode(self, batch):
            return {"audio": SimpleNamespace(feature=feats[: len(batch)])}

    ids = ["a", "b", "c", "a", "b", "c"]
    batch = Batch(ids=ids, inputs={}, lengths={}, present={"audio": torch.ones(6, dtype=torch.bool)},
                  labels={"emotion": torch.tensor([0, 1, 2, 0, 1, 2])}, groups={"speaker": list("xyzxyz")})
    cb = OnlineProbeCallback(every_n_epochs=1, max_clips=10)
    cb._reset(True)
    cb.on_validation_batch_end(None, Encoder(), None, batch, 0)
    cb.on_validation_batch_end(None, Encoder(), None, batch, 1)  # the same clips again: nothing new
    assert cb.count == 3 and cb.groups == ["x", "y", "z"]
    np.testing.assert_array_equal(np.concatenate(cb.features["audio"]), feats[:3].numpy())
    np.testing.assert_array_equal(np.concatenate(cb.labels), [0, 1, 2])


def test_each_rank_takes_its_share_of_max_clips():
    """Under DDP a rank takes at most ``ceil(max_clips / world_size)`` clips; the merged rows are cut to
    ``max_clips`` (tests/pretrain/test_online_probe_rows.py)."""
    from types import SimpleNamespace

    from contrastive_mer.data.sample import Batch
    from contrastive_mer.pretrain.online_probe import OnlineProbeCallback

    feats = torch.arange(12, dtype=torch.float32).reshape(6, 2)

    class Encoder:
        def encode(self, batch):
            return {"audio": SimpleNamespace(feature=feats[: len(batch)])}

    batch = Batch(ids=list("fedcba"), inputs={}, lengths={}, present={"audio": torch.ones(6, dtype=torch.bool)},
                  labels={"emotion": torch.arange(6)}, groups={"speaker": list("xxxyyy")})
    for world, taken in ((1, 5), (2, 3), (3, 2), (8, 1)):
        cb = OnlineProbeCallback(every_n_epochs=1, max_clips=5)
        cb._reset(True, world_size=world)
        cb.on_validation_batch_end(None, Encoder(), None, batch, 0)
        rows = cb.local_rows()
        assert cb.count == taken and rows.ids == list("fedcba")[:taken]  # loader order, before the merge
        np.testing.assert_array_equal(rows.features["audio"], feats[:taken].numpy())
