"""Figure b: Lightning training step against a plain PyTorch loop on the same model and batches.

The model is the demo configuration's :class:`PairwiseContrastiveModule`; the batches are collated once and
replayed from memory by every variant, so data loading is out of the comparison. Each step is timed from its
batch start to the next one's (Lightning: batch-start / batch-end callback hooks), so loop bookkeeping between
batches counts and trainer setup does not; the median over all timed steps is reported. Variants: a plain
loop (forward, loss, backward, optimiser step), a bare Lightning Trainer (no logger, no checkpointing) and the
Trainer ``cmer pretrain`` builds (TensorBoard logging, LR monitor, checkpoint callback, module's metric logging).
Target: Lightning overhead <= 5%.

    .venv/bin/python benchmarks/bench_lightning.py [--batch-size 32 --steps 8 --repeats 3 --threads 1]
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader

from common import Timing, apply_threads, base_parser, ms, report, table, verdict

from contrastive_mer.config import load_config
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.module import PairwiseContrastiveModule
from contrastive_mer.training import build_trainer

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.05


class StepTimer(Callback):
    """Per-step wall-clock durations: from one batch start to the next (the last one to its batch end)."""

    def __init__(self, skip: int):
        self.skip = skip
        self.starts: list[float] = []
        self.end = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()

    def steps(self) -> list[float]:
        return step_durations(self.starts, self.end, self.skip)


def step_durations(starts: list[float], end: float, skip: int) -> list[float]:
    marks = [*starts, end]
    return [b - a for a, b in zip(marks[skip:], marks[skip + 1:])]


def replay_loader(batches: list) -> DataLoader:
    """A loader that yields the given pre-collated batches as they are."""
    return DataLoader(batches, batch_size=None, shuffle=False, collate_fn=lambda b: b)


def plain_loop(module: PairwiseContrastiveModule, batches: list, skip: int) -> list[float]:
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    module.train()
    starts = []
    for batch in replay_loader(batches):
        starts.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        _, projections = module(batch)
        loss = module.loss_fn(projections, batch.present).loss
        loss.backward()
        opt.step()
    return step_durations(starts, time.perf_counter(), skip)


def lightning_loop(module: PairwiseContrastiveModule, batches: list, skip: int, cfg, bare: bool) -> list[float]:
    timer = StepTimer(skip)
    with tempfile.TemporaryDirectory() as tmp:
        if bare:
            trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, callbacks=[timer],
                                 enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, num_sanity_val_steps=0)
        else:
            trainer, _ = build_trainer(cfg, Path(tmp), [timer], has_val=False)
        trainer.fit(module, train_dataloaders=replay_loader(batches))
    return timer.steps()


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=3)
    parser.add_argument("--config", default=str(ROOT / "experiments" / "demo.yaml"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="steps per run (the first --warmup are not timed)")
    parser.add_argument("--unique-batches", type=int, default=2, help="distinct batches, replayed cyclically")
    args = parser.parse_args()
    apply_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.steps <= args.warmup:
        raise SystemExit("--steps must exceed --warmup")

    cfg = load_config(args.config, [
        f"data.batch_size={args.batch_size}", "data.val_fraction=0", "data.num_workers=0",
        "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        f"trainer.limit_train_batches={args.steps}"])
    data = MERDataModule(cfg)
    data.setup("fit")
    unique = []
    for batch in data.train_dataloader():
        unique.append(batch)
        if len(unique) == args.unique_batches:
            break
    batches = [unique[i % len(unique)] for i in range(args.steps)]
    pl.seed_everything(cfg.seed, verbose=False)
    initial = PairwiseContrastiveModule(cfg)

    runs = {
        "plain PyTorch loop": lambda m: plain_loop(m, batches, args.warmup),
        "Lightning, bare Trainer": lambda m: lightning_loop(m, batches, args.warmup, cfg, bare=True),
        "Lightning, cmer pretrain Trainer": lambda m: lightning_loop(m, batches, args.warmup, cfg, bare=False),
    }
    timings = {name: Timing() for name in runs}
    for r in range(args.repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            steps = runs[name](copy.deepcopy(initial))
            timings[name].samples += steps
            print(f"repeat {r + 1}/{args.repeats} {name}: {ms(sum(steps) / len(steps)):.1f} ms/step", flush=True)

    base = timings["plain PyTorch loop"].median
    rows, met_all = [], True
    for name, t in timings.items():
        overhead = t.median / base - 1
        is_lightning = name != "plain PyTorch loop"
        met = overhead <= TARGET
        met_all &= met or not is_lightning
        rows.append([name, ms(t.median), f"{t.spread:.0%}", f"{overhead:+.1%}" if is_lightning else "-",
                     verdict(met) if is_lightning else "-"])
    body = table(["variant", "ms / step", "IQR / median", "overhead vs plain", f"target <= {TARGET:.0%}"], rows)
    body += (f"\n\nDemo model (audio TCN, video resnet10t on 4 frames of 64x64, 2-layer text transformer, "
             f"128-d), batch {args.batch_size}, {args.steps} steps per run of which the first {args.warmup} "
             f"are not timed; median over the timed steps of {args.repeats} runs per variant (alternating "
             f"order), each step timed from its batch start to the next one's. "
             f"Target: {verdict(met_all)}. The Lightning step adds the module's metric logging (loss, "
             "per-pair loss and accuracy, temperatures), the optimiser closure and the loop's hooks; at "
             "hundreds of milliseconds of model compute per step these are a few milliseconds.")
    report("lightning", "b. Lightning training step vs plain PyTorch loop", body, not args.no_write)


if __name__ == "__main__":
    main()
