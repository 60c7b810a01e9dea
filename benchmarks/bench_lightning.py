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
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader

from common import Timing, apply_threads, base_parser, ms, report, table, verdict

from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.pretrain.loop import build_trainer

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.05


class StepRecord:
    """Per-step wall-clock durations and, within each step, the time spent in model work (forward + loss,
    backward, optimiser step); the rest of a step is loop overhead."""

    def __init__(self, skip: int):
        self.skip = skip
        self.starts: list[float] = []
        self.end = 0.0
        self.model: list[float] = []
        self._mark = 0.0

    def start_step(self) -> None:
        self.starts.append(time.perf_counter())
        self.model.append(0.0)

    def begin(self) -> None:
        self._mark = time.perf_counter()

    def finish(self) -> None:
        self.model[-1] += time.perf_counter() - self._mark

    def add(self, seconds: float) -> None:
        self.model[-1] += seconds

    def steps(self) -> list[float]:
        marks = [*self.starts, self.end]
        return [b - a for a, b in zip(marks[self.skip:], marks[self.skip + 1:])]

    def overheads(self) -> list[float]:
        return [d - m for d, m in zip(self.steps(), self.model[self.skip:])]


class StepTimer(Callback):
    """Fills a :class:`StepRecord` from Lightning's hooks: batch start / end, backward (and from its end to the
    optimiser's post-step hook: the update); the module's ``training_step`` is timed by a wrapper, minus its
    ``self.log`` calls (those are Lightning work: the plain loop has no equivalent)."""

    def __init__(self, record: StepRecord):
        self.record = record

    def setup(self, trainer, module, stage) -> None:
        rec, step, log = self.record, module.training_step, module.log

        def timed_step(*args, **kwargs):
            t = time.perf_counter()
            out = step(*args, **kwargs)
            rec.add(time.perf_counter() - t)
            return out

        def timed_log(*args, **kwargs):
            t = time.perf_counter()
            log(*args, **kwargs)
            rec.add(-(time.perf_counter() - t))

        module.training_step, module.log = timed_step, timed_log

    def on_fit_start(self, trainer, module) -> None:
        # Lightning runs the closure (training_step, backward) inside optimizer.step(closure): the update
        # itself is what follows the end of backward, up to the optimiser's post-step hook
        for opt in trainer.optimizers:
            opt.register_step_post_hook(lambda *a: self.record.finish())

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.record.start_step()

    def on_before_backward(self, trainer, module, loss) -> None:
        self.record.begin()

    def on_after_backward(self, trainer, module) -> None:
        self.record.finish()
        self.record.begin()  # the optimiser update starts now

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.record.end = time.perf_counter()


def replay_loader(batches: list) -> DataLoader:
    """A loader that yields the given pre-collated batches as they are."""
    return DataLoader(batches, batch_size=None, shuffle=False, collate_fn=lambda b: b)


def plain_loop(module: PairwiseContrastiveModule, batches: list, skip: int) -> StepRecord:
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    module.train()
    rec = StepRecord(skip)
    for batch in replay_loader(batches):
        rec.start_step()
        opt.zero_grad(set_to_none=True)
        rec.begin()
        _, projections = module(batch)
        loss = module.loss_fn(projections, batch.present).loss
        loss.backward()
        opt.step()
        rec.finish()
    rec.end = time.perf_counter()
    return rec


def lightning_loop(module: PairwiseContrastiveModule, batches: list, skip: int, cfg, bare: bool) -> StepRecord:
    rec = StepRecord(skip)
    timer = StepTimer(rec)
    with tempfile.TemporaryDirectory() as tmp:
        if bare:
            trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, callbacks=[timer],
                                 enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, num_sanity_val_steps=0)
        else:
            trainer, _ = build_trainer(cfg, Path(tmp), [timer], has_val=False)
        trainer.fit(module, train_dataloaders=replay_loader(batches))
    return rec


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
    overheads = {name: Timing() for name in runs}
    for r in range(args.repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            rec = runs[name](copy.deepcopy(initial))
            timings[name].samples += rec.steps()
            overheads[name].samples += rec.overheads()
            print(f"repeat {r + 1}/{args.repeats} {name}: {ms(statistics.median(rec.steps())):.1f} ms/step, "
                  f"outside model work {ms(statistics.median(rec.overheads())):.2f} ms", flush=True)

    plain = "plain PyTorch loop"
    base = timings[plain].median
    rows, met_all = [], True
    for name, t in timings.items():
        ab = t.median / base - 1
        extra = overheads[name].median - overheads[plain].median
        direct = extra / base
        is_lightning = name != plain
        met = direct <= TARGET
        met_all &= met or not is_lightning
        rows.append([name, ms(t.median), f"{t.spread:.0%}", f"{ab:+.1%}" if is_lightning else "-",
                     ms(overheads[name].median), f"{ms(extra):+.2f} ms = {direct:+.1%}" if is_lightning else "-",
                     verdict(met) if is_lightning else "-"])
    body = table(["variant", "ms / step", "IQR / median", "A/B: step time vs plain",
                  "ms / step outside model work", "direct: extra time outside model work vs plain",
                  f"target <= {TARGET:.0%}"], rows)
    body += (f"\n\nDemo model (audio TCN, video resnet10t on 4 frames of 64x64, 2-layer text transformer, "
             f"128-d), batch {args.batch_size}, {args.steps} steps per run of which the first {args.warmup} "
             f"are not timed; medians over the timed steps of {args.repeats} runs per variant (alternating "
             f"order), each step timed from its batch start to the next one's. Target (judged on the direct "
             f"measure): {verdict(met_all)}.\n\n"
             "Two measures. A/B compares whole step times; on this shared machine their noise (see the IQR "
             "column) is larger than the effect, so it can even come out negative. Direct: inside each run, "
             "the time spent in model work (forward + loss, backward, optimiser update; timed through "
             "Lightning's backward hooks, the optimiser's post-step hook and a wrapper around `training_step`) is "
             "subtracted from the step time; what remains is loop work (Lightning's closure, hooks, result "
             "collection, the module's `self.log` calls, which are counted as overhead, and the logger). "
             "The difference to the plain loop's remainder, relative to the plain step, is Lightning's "
             "overhead; it is measured in milliseconds of Python work and barely depends on the load.")
    report("lightning", "b. Lightning training step vs plain PyTorch loop", body, not args.no_write)


if __name__ == "__main__":
    main()
