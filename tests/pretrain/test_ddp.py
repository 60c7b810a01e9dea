"""Two-process CPU DDP pretraining of the demo config through the ``cmer pretrain`` command line.

Lightning's ``ddp`` strategy on CPU starts the second rank by re-running the command, so the run is a
subprocess: this file run as a script, which wraps the pairwise loss to record, on each rank and step, the
local batch rows, the local rows carrying both modalities of each pair, and the pair counts the loss reports,
then calls ``contrastive_mer.cli.main.main(["pretrain", ...])`` (what the ``cmer`` console script runs). The test
checks that the run completes, that its checkpoint loads with :func:`contrastive_mer.model.module.load_module`, and that
the loss really scored the gathered batch: every reported count equals the sum of both ranks' local counts.

The run has the online probe on and chooses its best checkpoint by ``online_probe/linear_acc``. The script also
records, on each rank, the clips the probe encoded there, the clips it probed after the ranks' shares were
merged, the scores it logged and the probe metrics Lightning holds afterwards: the test checks that the probe
saw the whole validation set (an odd number of clips, so the sampler pads one rank's share with a repeat), that
both ranks logged the same scores, and that they equal the probe of the same checkpoint in a single process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "experiments" / "demo.yaml"
BATCH, STEPS = 4, 2
STRATEGY = "ddp"
VAL_CLIPS = 15  # 5 of 12 speakers x 3 emotions validate: odd, so DistributedSampler pads rank 1's share
WEIGHT_DECAYS = [0.01, 1.0]
OVERRIDES = [
    f"trainer.strategy={STRATEGY}", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_epochs=1",
    f"trainer.limit_train_batches={STEPS}", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    "data.options.num_speakers=12", "data.options.speakers=[0,1,2,3,4,5,6,7,8,9,10,11]",
    "data.options.num_emotions=3", "data.options.clips_per_speaker_emotion=1", "data.val_fraction=0.42",
    "data.options.missing_fraction=0.3", f"data.batch_size={BATCH}", "data.eval_batch_size=4",
    "data.num_workers=0", "data.cache=none", "loss.gather=true", "loss.local_loss=true",
    "monitor.online_probe.every_n_epochs=1",
    f"monitor.online_probe.weight_decays=[{','.join(map(str, WEIGHT_DECAYS))}]",
    "monitor.checkpoint=online_probe/linear_acc",
]


def _record_and_run(record_dir: Path, argv: list[str]) -> int:
    """Wrap ``PairwiseInfoNCE.forward`` to log counts per call, run ``cmer``, save this rank's log."""
    import torch.distributed as dist

    from contrastive_mer.cli.main import main
    from contrastive_mer.model.losses import PairwiseInfoNCE
    from contrastive_mer.pretrain.online_probe import OnlineProbeCallback

    calls: list[dict] = []
    original = PairwiseInfoNCE.forward

    def recording_forward(self, embeddings, present, labels=None):
        out = original(self, embeddings, present, labels)
        calls.append({
            "training": self.training,
            "world": dist.get_world_size() if dist.is_initialized() else 1,
            "rows": int(next(iter(embeddings.values())).shape[0]),
            "local_valid": {f"{a}-{b}": int((present[a] & present[b]).sum()) for a, b in self.pairs},
            "count": dict(out.count),
            "loss": float(out.loss.detach()),
        })
        return out

    probes: list[dict] = []
    epoch_end = OnlineProbeCallback.on_validation_epoch_end

    def recording_epoch_end(self, trainer, module):
        local, active = list(getattr(self, "ids", [])), self.active
        epoch_end(self, trainer, module)
        if active:
            probed = getattr(self, "probed", None)
            probes.append({"local_ids": local, "probed_ids": getattr(probed, "ids", None),
                           "scores": getattr(self, "scores", None)})

    def recording_validation_end(self, trainer, module):  # after Lightning gathered the epoch's metrics
        if probes and "metrics" not in probes[-1]:
            probes[-1]["metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items()
                                     if k.startswith("online_probe")}

    PairwiseInfoNCE.forward = recording_forward
    OnlineProbeCallback.on_validation_epoch_end = recording_epoch_end
    OnlineProbeCallback.on_validation_end = recording_validation_end
    code = main(argv)
    rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("LOCAL_RANK", 0))
    (record_dir / f"rank{rank}.json").write_text(json.dumps(calls))
    (record_dir / f"probe{rank}.json").write_text(json.dumps(probes))
    return code


def _single_process_probe(checkpoint: Path) -> dict[str, float]:
    """The online probe of ``checkpoint`` on the whole validation set in this process (no Trainer, no DDP)."""
    from contrastive_mer.data.datamodule import MERDataModule
    from contrastive_mer.model.module import load_module
    from contrastive_mer.pretrain.online_probe import OnlineProbeCallback
    from contrastive_mer.pretrain.online_probe_rows import merge_rows

    module = load_module(str(checkpoint))
    data = MERDataModule(module.cfg)
    data.setup("fit")
    probe = OnlineProbeCallback(1, max_clips=1024, label=None, group="speaker", seed=module.cfg.seed,
                                weight_decays=WEIGHT_DECAYS)
    probe._reset(True)
    for i, batch in enumerate(data.val_dataloader()):
        probe.on_validation_batch_end(None, module, None, batch, i)
    rows = merge_rows([probe.local_rows()], probe.max_clips)
    assert len(rows) == VAL_CLIPS
    return probe.probe(rows, len(data.adapter.label_names["emotion"]), 1)


def test_every_parameter_receives_a_gradient():
    """Lightning's ``ddp`` runs DDP without ``find_unused_parameters``: a parameter that never receives a gradient
    (even a zero one) makes the second step fail. Checked on a demo batch as it is, and with one modality absent
    from the whole batch (its pairs do not count, its encoder must still take part)."""
    from contrastive_mer.data.datamodule import MERDataModule
    from contrastive_mer.experiment import load_config
    from contrastive_mer.model.module import PairwiseContrastiveModule

    cfg = load_config(DEMO, [o for o in OVERRIDES if o.startswith("data.")])
    data = MERDataModule(cfg)
    data.setup("fit")
    module = PairwiseContrastiveModule(cfg)
    batch = next(iter(data.train_dataloader()))
    for absent in (None, "video"):
        if absent:
            batch.present[absent] = torch.zeros_like(batch.present[absent])
        module.zero_grad(set_to_none=True)
        _, projections = module(batch)
        out = module.loss_fn(projections, batch.present)
        out.loss.backward()
        missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"no gradient (absent modality: {absent}) for {missing}"
        if absent:
            assert all(p.grad.abs().sum() == 0 for p in module.encoders[absent].parameters())
            assert not any(absent in pair for pair in out.per_pair)


def test_ddp_pretraining_gathers_and_saves_a_loadable_checkpoint(tmp_path):
    from contrastive_mer.model.module import PairwiseContrastiveModule, load_module

    run_dir, records = tmp_path / "run", tmp_path / "records"
    records.mkdir()
    argv = ["pretrain", "--config", str(DEMO), "--output", str(run_dir), *OVERRIDES]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, __file__, str(records), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "checkpoint:" in proc.stdout, log

    # the checkpoint: written once, by rank 0, after STEPS optimiser steps; loads without the training code
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), log
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == STEPS
    module = load_module(str(ckpt))
    assert isinstance(module, PairwiseContrastiveModule) and not module.training
    assert module.modalities == ["audio", "video", "text"]
    assert module.cfg.trainer.strategy == STRATEGY and module.cfg.trainer.devices == 2
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, state["state_dict"][name], msg=name)
        assert torch.isfinite(value.float()).all(), name

    # the loss scored the gathered batch on both ranks
    ranks = [json.loads((records / f"rank{r}.json").read_text()) for r in range(2)]
    train = [[c for c in calls if c["training"]] for calls in ranks]
    assert len(train[0]) == len(train[1]) == STEPS, log
    assert all(c["world"] == 2 and c["rows"] == BATCH for calls in train for c in calls)
    for calls in zip(*ranks):  # every call, training and validation, in the same order on both ranks
        assert calls[0]["training"] == calls[1]["training"]
        for pair, count in calls[0]["count"].items():
            assert count == calls[1]["count"][pair]
            assert count == calls[0]["local_valid"][pair] + calls[1]["local_valid"][pair], (pair, calls)
    assert any(any(c["count"][p] > c["local_valid"][p] for p in c["count"]) for c in train[0])
    # local-loss values differ per rank; their mean is the global loss, finite
    assert all(torch.isfinite(torch.tensor(c["loss"])) for calls in ranks for c in calls)

    # the online probe saw the whole validation set, once per clip, and both ranks logged its scores
    val_ids = json.loads((run_dir / "split.json").read_text())["val"]
    assert len(set(val_ids)) == len(val_ids) == VAL_CLIPS
    probes = [json.loads((records / f"probe{r}.json").read_text()) for r in range(2)]
    assert [len(p) for p in probes] == [1, 1], log  # one validation epoch (the sanity check does not probe)
    local = [p[0]["local_ids"] for p in probes]
    assert len(local[0]) == len(local[1]) == (VAL_CLIPS + 1) // 2  # each rank encoded only its share
    assert len(local[0]) + len(local[1]) == VAL_CLIPS + 1 and set(local[0]) | set(local[1]) == set(val_ids)
    for p in probes:
        assert p[0]["probed_ids"] == sorted(val_ids)  # every clip once, sorted by clip id
    scores = probes[0][0]["scores"]
    assert len(scores) == 8 and "online_probe/linear_acc" in scores  # 3 modalities and fused, kNN and linear
    assert probes[1][0]["scores"] == scores
    for p in probes:  # what Lightning holds on each rank (float32): rank 0's scores
        assert p[0]["metrics"] == pytest.approx(scores, abs=1e-6)
    assert (run_dir / "checkpoints" / "best-000.ckpt").is_file(), log  # chosen by online_probe/linear_acc
    # a single process probing the same checkpoint on the same clips gets the same scores
    assert _single_process_probe(ckpt) == pytest.approx(scores, abs=1e-6)


if __name__ == "__main__":
    sys.exit(_record_and_run(Path(sys.argv[1]), sys.argv[2:]))
