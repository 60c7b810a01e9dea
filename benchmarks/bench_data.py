"""Figure d: the data pipeline on RAVDESS (audio + action units + video) against the training step it feeds, and
how many DataLoader workers keep a training step busy.

The model and data settings are ``benchmarks/ravdess_av.yaml`` (experiments/ravdess.yaml with video in place of
text). Clips go through the real path: ``RavdessAdapter.load`` (FLAC/WAV decode, MP4 decode + frame sampling,
action units) then each modality's preprocessor. Measured in one run, interleaved over ``--repeats``:

* per-clip time in one process, clips with video and audio + AU clips apart (the cost one worker pays per clip);
* a DataLoader epoch with each of ``--workers`` (0 = in the main process), no cache;
* ``data.cache=disk``: the first epoch (decode + write), then a new dataset reading the cache with each worker count;
* the training step of the same model on this CPU (forward, loss, backward, AdamW) on a batch of ``batch_size``
  clips that all have every modality (as the full RAVDESS does);

and from them the workers a GPU needs: (clips/s the step consumes) / (clips/s one worker prepares).

    .venv/bin/python benchmarks/bench_data.py [--threads 1 --clips 64 --workers 0 1 2 --repeats 2 --steps 3]
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from common import DATA_ROOT, apply_threads, base_parser, current_rss_mb, report, table

from contrastive_mer.config import to_dict
from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset, PreparedSample
from contrastive_mer.experiment import config_from_dict, load_config
from contrastive_mer.model.module import PairwiseContrastiveModule

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "ravdess_av.yaml"
RAVDESS = DATA_ROOT / "ravdess"
#: the GPU training step assumed when no GPU is lent (see the note written with the figure)
GPU_STEP_MS = 20.0


def make_config(root: Path) -> Any:
    """``benchmarks/ravdess_av.yaml`` pointed at ``root`` (validated)."""
    data = to_dict(load_config(CONFIG))
    data["data"]["root"] = str(root)
    return config_from_dict(data)


def epoch(dataset: MERDataset) -> tuple[float, list[float]]:
    """Iterate once in this process: total seconds and per-clip seconds."""
    per_clip = []
    start = time.perf_counter()
    for i in range(len(dataset)):
        t = time.perf_counter()
        item = dataset[i]
        per_clip.append(time.perf_counter() - t)
        if not isinstance(item, PreparedSample):
            raise SystemExit(f"clip {item.id} skipped: {item.reason}")
    return time.perf_counter() - start, per_clip


def loader_epoch(dataset: MERDataset, preprocessors: dict[str, Any], workers: int, batch_size: int) -> float:
    """Seconds for one pass of a DataLoader with ``workers`` processes (their start-up included)."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=Collator(preprocessors))
    start = time.perf_counter()
    n = sum(len(b) for b in loader)
    assert n == len(dataset), (n, len(dataset))
    return time.perf_counter() - start


def training_step_seconds(cfg: Any, batch: Any, steps: int) -> tuple[list[float], float]:
    """Seconds per training step (forward, loss, backward, optimiser) of the config's model on ``batch``, and the
    floating-point operations of one step (counted by torch's FlopCounterMode on the untimed first step)."""
    from torch.utils.flop_counter import FlopCounterMode

    module = PairwiseContrastiveModule(cfg).train()
    optim = module.configure_optimizers()
    optim = optim["optimizer"] if isinstance(optim, dict) else optim
    times, flops = [], 0.0
    for i in range(steps + 1):  # the first step (allocations, FLOP count) is not timed
        counter = FlopCounterMode(display=False) if i == 0 else None
        t = time.perf_counter()
        with counter if counter is not None else contextlib.nullcontext():
            loss = module.compute_loss(batch).loss
            loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if counter is not None:
            flops = float(counter.get_total_flops())
        else:
            times.append(time.perf_counter() - t)
    return times, flops


def full_batch(dataset: MERDataset, video: list[int], others: list[int], preprocessors: dict[str, Any],
               size: int) -> Any:
    """A batch of ``size`` clips that all have audio, action units and video: the video clips' tensors with the
    audio and AU tensors of the other clips (the full RAVDESS has video for every take)."""
    items = []
    for k in range(size):
        v, o = dataset[video[k % len(video)]], dataset[others[k % len(others)]]
        assert isinstance(v, PreparedSample) and isinstance(o, PreparedSample)
        items.append(PreparedSample(f"{k}", {**o.tensors, "video": v.tensors["video"]}, o.labels, o.groups))
    return Collator(preprocessors)(items)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=2)
    parser.add_argument("--root", default=str(RAVDESS))
    parser.add_argument("--clips", type=int, default=64, help="takes to read: those with video, then audio ones")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--gpu-step-ms", type=float, default=GPU_STEP_MS,
                        help="assumed GPU training step of the same model and batch (no GPU here)")
    args = parser.parse_args()
    apply_threads(args.threads)
    root = Path(args.root)
    if not root.is_dir():
        raise SystemExit(f"RAVDESS not found at {root}; pass --root")
    load_start = os.getloadavg()

    cfg = make_config(root)
    batch_size = int(cfg.data.batch_size)
    adapter = build_corpus(cfg)
    usable = [r for r in adapter.records() if r.sources]
    # every take with video first (RAVDESS here has 7, all actor 01), then audio + AU takes in id order
    records = ([r for r in usable if "video" in r.sources] + [r for r in usable if "video" not in r.sources])
    records = records[: args.clips]
    random.Random(0).shuffle(records)  # spread the slow video takes over the DataLoader's batches
    preprocessors = build_preprocessors(cfg)
    with_video = [i for i, r in enumerate(records) if "video" in r.sources]
    without = [i for i in range(len(records)) if i not in set(with_video)]
    if not with_video:
        raise SystemExit(f"no take with video under {root}")

    first: list[float] = []
    per_video: list[float] = []
    per_audio: list[float] = []
    plain: dict[int, list[float]] = {w: [] for w in args.workers}
    cached: dict[int, list[float]] = {w: [] for w in args.workers}
    write: list[float] = []
    cache_mb = 0.0
    for r in range(args.repeats):
        total, per_clip = epoch(MERDataset(adapter, records, preprocessors, cache="none"))
        first.append(total)
        per_video += [per_clip[i] for i in with_video]
        per_audio += [per_clip[i] for i in without]
        order = args.workers if r % 2 == 0 else args.workers[::-1]
        for w in order:
            plain[w].append(loader_epoch(MERDataset(adapter, records, preprocessors, cache="none"), preprocessors,
                                         w, batch_size))
        with tempfile.TemporaryDirectory() as tmp:
            write.append(loader_epoch(MERDataset(adapter, records, preprocessors, cache="disk", cache_dir=tmp),
                                      preprocessors, 0, batch_size))
            for w in order:
                cached[w].append(loader_epoch(MERDataset(adapter, records, preprocessors, cache="disk",
                                                         cache_dir=tmp), preprocessors, w, batch_size))
            cache_mb = sum(f.stat().st_size for f in Path(tmp).rglob("*.pt")) / 2 ** 20
        print(f"repeat {r + 1}/{args.repeats}: in-process epoch {total:.2f} s", flush=True)

    reference = MERDataset(adapter, records, preprocessors, cache="memory")
    batch = full_batch(reference, with_video, without, preprocessors, batch_size)
    step_times, flops = training_step_seconds(cfg, batch, args.steps)
    step = statistics.median(step_times)
    load_end = os.getloadavg()

    n = len(records)
    med = statistics.median
    rows = [
        ["1 process, no cache: all clips", f"{n / med(first):.1f}", f"{1e3 * med(first) / n:.1f}"],
        [f"  clips with video ({len(with_video)}): audio + AU + 8 frames", f"{1 / med(per_video):.2f}",
         f"{1e3 * med(per_video):.0f}"],
        [f"  audio + AU clips ({len(without)})", f"{1 / med(per_audio):.0f}", f"{1e3 * med(per_audio):.1f}"],
    ]
    rows += [[f"DataLoader, {w} workers, no cache", f"{n / med(plain[w]):.1f}", f"{1e3 * med(plain[w]) / n:.1f}"]
             for w in args.workers]
    rows.append(["cache=disk, epoch 1 (decode + write, 0 workers)", f"{n / med(write):.1f}",
                 f"{1e3 * med(write) / n:.1f}"])
    rows += [[f"cache=disk, later epoch, {w} workers", f"{n / med(cached[w]):.0f}", f"{1e3 * med(cached[w]) / n:.2f}"]
             for w in args.workers]
    rows.append([f"training step on this CPU, batch {batch_size} (all modalities; {step:.1f} s / step)",
                 f"{batch_size / step:.2g}", f"{1e3 * step / batch_size:.0f}"])
    body = table(["pipeline", "clips / s", "ms / clip (median)"], rows)

    per_worker = {"every clip with video (full RAVDESS), no cache": 1 / med(per_video),
                  "audio + AU only, no cache": 1 / med(per_audio),
                  "any corpus, disk-cached epochs": n / med(cached[0])}
    need = {"this CPU": batch_size / step, f"a GPU at {args.gpu_step_ms:g} ms / step (assumed)":
            batch_size / (args.gpu_step_ms / 1e3)}
    feed = [[kind, f"{rate:.3g}"] + [f"{math.ceil(want / rate)}" for want in need.values()]
            for kind, rate in per_worker.items()]
    body += ("\n\n**Workers needed** = ceil(clips/s the training step consumes / clips/s one worker prepares):\n\n"
             + table(["clips", "one worker: clips / s"] + [f"workers for {k} ({v:.3g} clips / s)"
                                                          for k, v in need.items()], feed))
    body += (
        f"\n\n{n} RAVDESS takes ({len(with_video)} with 1280x720 MP4 video, all of actor 01, the only one with video "
        f"in the shared copy; the rest FLAC/WAV audio + action units in id order; shuffled with a fixed seed), "
        f"DataLoader batches of {batch_size}; model and preprocessing as `benchmarks/ravdess_av.yaml` (64-bin "
        f"log-mel <= 4 s + TCN, AU statistics + MLP, 8 frames 112x112 centre crop + ResNet-10t per frame). "
        f"Medians over {args.repeats} interleaved repeats; DataLoader rows include starting the workers. Disk cache: "
        f"{cache_mb:.1f} MiB for {n} clips. Training step: median of {args.steps} steps after one untimed, "
        f"torch with {torch.get_num_threads()} threads. Process RSS at the end: {current_rss_mb():.0f} MiB. "
        f"Load average (1 min) at the start / end: {load_start[0]:.1f} / {load_end[0]:.1f} on {os.cpu_count()} "
        "cores shared with other processes, so the worker rows cannot scale here: more workers than free cores "
        "only share them.\n\n"
        f"How many workers per GPU. On this CPU the training step ({step:.1f} s per batch of {batch_size}, "
        f"{batch_size / step:.2g} clips/s) is "
        + ("slower" if batch_size / step < per_worker["every clip with video (full RAVDESS), no cache"] else "faster")
        + " than one worker decodes clips with video, so "
        f"{math.ceil(need['this CPU'] / per_worker['every clip with video (full RAVDESS), no cache'])} worker(s) "
        "keep it busy whatever the corpus. A GPU step is far shorter, and then a corpus where every clip has video "
        "is bound by decoding (about 32 of each clip's 1280x720 H.264 frames, figure d2; the audio and AUs cost "
        f"{1e3 * med(per_audio):.0f} ms): "
        f"{feed[0][3]} workers at the assumed step, which no machine has. So decode once: the first epoch with "
        "`data.cache: disk` (or `disk+memory`) and one worker per free core, then later epochs read one small "
        f"tensor file per modality per clip: {feed[2][3]} workers at this machine's per-worker read rate "
        f"({per_worker['any corpus, disk-cached epochs']:.0f} clips/s, measured under the load above; "
        "`disk+memory` makes later epochs a dictionary lookup once each worker has read its share). Audio + AU "
        f"corpora need {feed[1][3]} workers without a cache. "
        f"No GPU was lent to this session: the GPU step of {args.gpu_step_ms:g} ms per batch of {batch_size} is an "
        f"assumption, not a measurement: one step of this model is {flops / 1e9:.0f} GFLOP (forward + backward, "
        "counted with torch's FlopCounterMode; mostly the ResNet-10t on the batch's frames), "
        f"{1e3 * flops / 40e12:.0f}-{1e3 * flops / 20e12:.0f} ms of arithmetic at an effective 20-40 TFLOP/s "
        "(fp32 with TF32 on an H100-class GPU), plus kernel launches and the optimiser; "
        "`benchmarks/gpu_check.py` measures this model's step on a GPU (its data-feed section) and divides by "
        "per-worker rates from this figure. Each worker also needs a core of its own.")
    report("data", "d. Data pipeline on RAVDESS: workers per GPU", body, not args.no_write)


if __name__ == "__main__":
    main()
