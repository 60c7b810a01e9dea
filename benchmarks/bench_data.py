"""Figure d: data pipeline throughput on the RAVDESS files, and the cached second epoch against the first.

Clips go through the real path: ``RavdessAdapter.load`` (FLAC/WAV decode, MP4 decode + frame sampling, action
units, statement text) then each modality's preprocessor (log-mel, frame resize/normalise, tokenise, vector).
Measured: per-clip time in one process (clips/s per worker; audio-only clips and clips with video apart),
a DataLoader with ``--workers`` processes, and a second epoch over the same dataset with ``data.cache=memory``
(same process) and ``data.cache=disk`` (a new dataset object reading the cache folder), each against its first.

    .venv/bin/python benchmarks/bench_data.py [--clips 64 --workers 2 --repeats 2 --threads 1]
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from common import DATA_ROOT, apply_threads, base_parser, current_rss_mb, report, table

from contrastive_mer.config import config_from_dict, load_config, to_dict
from contrastive_mer.data.datamodule import build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset, PreparedSample
from contrastive_mer.data.datasets import build_adapter

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = DATA_ROOT / "ravdess"

MODALITIES = {
    "audio": {"encoder": "tcn", "encoder_args": {"n_mels": 64, "output_dim": 128},
              "preprocess": {"max_seconds": 4.0}},
    "video": {"encoder": "timm_frames",
              "encoder_args": {"model_name": "resnet10t", "output_dim": 128},
              "preprocess": {"num_frames": 8, "size": 112}},
    "text": {"encoder": "hf_text", "encoder_args": {"output_dim": 128}},
    "au": {"encoder": "mlp", "encoder_args": {"input_dim": 35, "output_dim": 128}},
}


def make_config(root: Path):
    """The demo experiment pointed at RAVDESS with its four modalities (validated)."""
    data = to_dict(load_config(ROOT / "experiments" / "demo.yaml"))
    data["data"].update(dataset="ravdess", root=str(root),
                        options={"num_frames": 8, "frame_size": 112, "max_seconds": 4.0})
    data["model"]["modalities"] = MODALITIES
    return config_from_dict(data)


def epoch(dataset: MERDataset) -> tuple[float, list[float], int]:
    """Iterate once in this process: total seconds, per-clip seconds, clips skipped."""
    per_clip, skipped = [], 0
    start = time.perf_counter()
    for i in range(len(dataset)):
        t = time.perf_counter()
        item = dataset[i]
        per_clip.append(time.perf_counter() - t)
        skipped += not isinstance(item, PreparedSample)
    return time.perf_counter() - start, per_clip, skipped


def loader_epoch(dataset: MERDataset, preprocessors, workers: int, batch_size: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=Collator(preprocessors),
                        persistent_workers=False)
    start = time.perf_counter()
    n = sum(len(b) + len(b.skipped) for b in loader)
    assert n == len(dataset)
    return time.perf_counter() - start


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=2)
    parser.add_argument("--root", default=str(RAVDESS))
    parser.add_argument("--clips", type=int, default=64, help="takes to read: those with video, then audio ones")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    apply_threads(args.threads)
    root = Path(args.root)
    if not root.is_dir():
        raise SystemExit(f"RAVDESS not found at {root}; pass --root")

    cfg = make_config(root)
    adapter = build_adapter("ravdess", root=str(root), **OmegaConf.to_container(cfg.data.options))
    usable = [r for r in adapter.records() if r.sources]
    # every take with video first (RAVDESS here has 7, all actor 01), then audio takes in id order
    records = ([r for r in usable if "video" in r.sources] + [r for r in usable if "video" not in r.sources])
    records = records[: args.clips]
    random.Random(0).shuffle(records)  # spread the slow video takes over the DataLoader's batches
    preprocessors = build_preprocessors(cfg)
    with_video = {i for i, r in enumerate(records) if "video" in r.sources}

    first, second, per_video, per_audio, loader_times = [], {"memory": [], "disk": []}, [], [], []
    cold = {"memory": [], "disk": []}
    skipped = 0
    for r in range(args.repeats):
        ds = MERDataset(adapter, records, preprocessors, cache="none")
        total, per_clip, skipped = epoch(ds)
        first.append(total)
        per_video += [t for i, t in enumerate(per_clip) if i in with_video]
        per_audio += [t for i, t in enumerate(per_clip) if i not in with_video]
        loader_times.append(loader_epoch(MERDataset(adapter, records, preprocessors, cache="none"), preprocessors,
                                         args.workers, args.batch_size))
        mem = MERDataset(adapter, records, preprocessors, cache="memory")
        cold["memory"].append(epoch(mem)[0])
        second["memory"].append(epoch(mem)[0])
        with tempfile.TemporaryDirectory() as tmp:
            disk = MERDataset(adapter, records, preprocessors, cache="disk", cache_dir=tmp)
            cold["disk"].append(epoch(disk)[0])
            reread = MERDataset(adapter, records, preprocessors, cache="disk", cache_dir=tmp)
            second["disk"].append(epoch(reread)[0])
            cache_mb = sum(f.stat().st_size for f in Path(tmp).rglob("*.pt")) / 2 ** 20
        print(f"repeat {r + 1}/{args.repeats}: first epoch {total:.2f} s, loader {loader_times[-1]:.2f} s", flush=True)

    n = len(records)
    med = statistics.median
    rate = n / med(first)
    rows = [
        ["1 process, no cache (per worker)", f"{rate:.1f}", f"{1e3 * med(first) / n:.1f}", "-"],
        [f"  clips with video ({len(with_video)})", f"{1 / med(per_video):.1f}" if per_video else "-",
         f"{1e3 * med(per_video):.1f}" if per_video else "-", "-"],
        [f"  audio/au/text only ({n - len(with_video)})", f"{1 / med(per_audio):.1f}",
         f"{1e3 * med(per_audio):.1f}", "-"],
        [f"DataLoader, {args.workers} workers, no cache", f"{n / med(loader_times):.1f}",
         f"{1e3 * med(loader_times) / n:.1f}", f"{med(first) / med(loader_times):.2f}x vs 1 process"],
        ["cache=memory, epoch 1", f"{n / med(cold['memory']):.1f}", f"{1e3 * med(cold['memory']) / n:.1f}", "-"],
        ["cache=memory, epoch 2", f"{n / med(second['memory']):.3g}", f"{1e3 * med(second['memory']) / n:.2g}",
         f"{med(cold['memory']) / med(second['memory']):.3g}x faster than epoch 1"],
        ["cache=disk, epoch 1 (decode + write)", f"{n / med(cold['disk']):.1f}", f"{1e3 * med(cold['disk']) / n:.1f}",
         "-"],
        ["cache=disk, epoch 2 (new dataset, read)", f"{n / med(second['disk']):.0f}",
         f"{1e3 * med(second['disk']) / n:.2f}", f"{med(cold['disk']) / med(second['disk']):.0f}x faster than epoch 1"],
    ]
    body = table(["pipeline", "clips / s", "ms / clip (median)", "ratio"], rows)
    body += (f"\n\n{n} RAVDESS takes ({len(with_video)} with 1280x720 MP4 video, the rest FLAC/WAV audio in id "
             f"order; shuffled with a fixed seed), DataLoader batches of {args.batch_size}; modalities audio "
             f"(64-bin log-mel, <= 4 s), video (8 frames, 112x112 centre crop), text, action units; "
             f"{skipped} skipped. Median over {args.repeats} repeats. Disk cache: "
             f"{cache_mb:.1f} MiB for {n} clips. Process RSS at the end: {current_rss_mb():.0f} MiB.\n\n"
             "What limits it: video. For 8 frames of a ~3.5 s 1280x720 H.264 clip the decoder seeks to the "
             "keyframe before each sampled frame and skips unreferenced frames, but still decodes about 32 "
             "frames (4 IDR frames and the P-frame chains the sampled frames depend on), so a clip with video "
             "costs about 100 audio clips. Absolute times here follow the machine's load (compare the audio "
             "rows of two runs); figure d2 compares the old and new video decoders within one run. Audio clips "
             "are bound by FLAC decoding "
             "and the log-mel. Both caches store the preprocessed tensors, so a cached epoch is a dictionary lookup "
             "(memory) or one small `torch.load` per modality (disk). Workers scale with free cores; on this "
             "shared 2-core machine the DataLoader row is bounded by the other processes' load.")
    report("data", "d. Data pipeline on RAVDESS", body, not args.no_write)


if __name__ == "__main__":
    main()
