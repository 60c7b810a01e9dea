"""Figure i: a base-size speech backbone (randomly initialised wav2vec 2.0, about 95M parameters) through
``hf_audio``: seconds of audio per second, peak memory on long clips with windows, and the epoch time of the
pairwise heads on cached backbone features against running the frozen backbone every epoch.

(i) throughput: frozen ``hf_audio`` (all 13 hidden states, weighted) over a set of clips, median of repeats;
(ii) memory: one subprocess per clip length (and one without windows), the RSS high-water mark of the forward
pass above the process after loading the model and a one-window warm-up (``VmHWM`` reset through
``/proc/self/clear_refs``); the stitched output itself grows with the clip and is listed beside it;
(iii) epochs: an audio + AU-vector pairwise model (mlp encoders, projection heads, pairwise InfoNCE, AdamW)
trained for one epoch on cached utterance means against the same model whose audio encoder is the frozen
backbone run on every batch (``hf_audio`` + projection), timed alternately in the same run.

    .venv/bin/python benchmarks/backbones.py [--threads 2 --clips 8 --seconds 4 --minutes 1 3 10]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import apply_threads, base_parser, high_water_mb, interleaved, report, table

RATE = 16000


def save_base_wav2vec2(folder: Path, seed: int = 0, layers: int = 12, **overrides: Any) -> Path:
    """wav2vec 2.0 base (transformers' default config: 12 layers, 768 wide, group-norm front end), random init;
    ``layers`` < 12: the same front end and width with fewer transformer layers; ``overrides``: other sizes."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(num_hidden_layers=layers, **overrides)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return folder


def clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.1, size=int(seconds * RATE)).astype(np.float32) for _ in range(n)]


def memory_child(folder: str, minutes: float, window: float, threads: int) -> None:
    """Run in a subprocess: print JSON with the forward pass's RSS peak above the loaded model."""
    from contrastive_mer.encoders import build_encoder

    torch.set_num_threads(threads)
    enc = build_encoder("hf_audio", {"model_path": folder, "layers": -1, "window_seconds": window})
    with torch.no_grad():
        enc(torch.randn(1, int(min(window, 20.0) * RATE)))  # warm-up: one window
    wave = torch.randn(1, int(minutes * 60 * RATE)) * 0.1
    base = high_water_mb()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    with torch.no_grad():
        out = enc(wave)
    elapsed = time.perf_counter() - start
    print(json.dumps({"peak_over_loaded_mb": high_water_mb() - base, "loaded_mb": base,
                      "output_mb": out.sequence.numel() * 4 / 2 ** 20, "frames": int(out.sequence.shape[1]),
                      "seconds": elapsed}))


def epoch_times(folder: Path, n: int, seconds: float, batch: int, repeats: int) -> dict[str, float]:
    from contrastive_mer.config import HeadConfig
    from contrastive_mer.data.kinds import INPUT_KINDS
    from contrastive_mer.encoders import build_encoder
    from contrastive_mer.model.heads import ProjectionHead
    from contrastive_mer.model.losses import PairwiseInfoNCE

    waves = torch.from_numpy(np.stack(clips(n, seconds, seed=1)))
    au = torch.randn(n, 35)
    kind = INPUT_KINDS.get("hf_audio_cached")
    prep = kind.build(kind.config_cls(model_path=str(folder), input_dim=768, max_seconds=None))
    cache_start = time.perf_counter()
    cached = torch.stack([prep(w.numpy()) for w in waves])  # what the disk cache holds: once per clip
    cache_seconds = time.perf_counter() - cache_start
    head = HeadConfig(hidden_dim=256, output_dim=128)
    loss_fn = PairwiseInfoNCE(["audio", "au"], temperature=0.1)

    def model(audio_encoder: torch.nn.Module) -> tuple[torch.nn.ModuleDict, torch.optim.Optimizer]:
        parts = torch.nn.ModuleDict({
            "audio": audio_encoder, "au": build_encoder("mlp", {"input_dim": 35, "output_dim": 128}),
            "h_audio": ProjectionHead(128, head), "h_au": ProjectionHead(128, head)})
        return parts, torch.optim.AdamW([p for p in parts.parameters() if p.requires_grad], lr=1e-3)

    backbone, opt_b = model(build_encoder("hf_audio", {"model_path": str(folder), "layers": "all",
                                                       "output_dim": 128}))
    heads, opt_h = model(build_encoder("mlp", {"input_dim": 768, "output_dim": 128}))
    present = torch.ones(batch, dtype=torch.bool)

    def epoch(parts: torch.nn.ModuleDict, opt: torch.optim.Optimizer, audio: torch.Tensor) -> None:
        parts.train()
        for start in range(0, n - batch + 1, batch):
            rows = slice(start, start + batch)
            z = {"audio": parts["h_audio"](parts["audio"](audio[rows]).feature),
                 "au": parts["h_au"](parts["au"](au[rows]).feature)}
            loss = loss_fn(z, {"audio": present, "au": present}).loss
            opt.zero_grad()
            loss.backward()
            opt.step()

    timings = interleaved({"backbone": lambda: epoch(backbone, opt_b, waves),
                           "cached": lambda: epoch(heads, opt_h, cached)}, repeats=repeats, warmup=1)
    return {"backbone": timings["backbone"].median, "cached": timings["cached"].median,
            "cache_once": cache_seconds, "spread": max(t.spread for t in timings.values())}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=3)
    parser.add_argument("--clips", type=int, default=8, help="clips in the throughput set and the epoch")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per clip")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--no-window-minutes", type=float, default=1.0, help="a clip length also run whole")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--memory-layers", type=int, default=2,
                        help="transformer layers of the model in (ii) (same front end and width as base)")
    parser.add_argument("--model-dir", type=Path, default=None, help="where to keep the random models (tmp)")
    parser.add_argument("--child", nargs=3, help=argparse_hidden())
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    if args.child:
        memory_child(args.child[0], float(args.child[1]), float(args.child[2]), threads)
        return
    apply_threads(args.threads)
    from contrastive_mer.encoders import build_encoder

    root = args.model_dir or Path(tempfile.mkdtemp())
    folder = save_base_wav2vec2(root / "wav2vec2-base-random")
    mem_folder = folder if args.memory_layers == 12 else \
        save_base_wav2vec2(root / f"wav2vec2-base-{args.memory_layers}layers", layers=args.memory_layers)
    enc = build_encoder("hf_audio", {"model_path": str(folder), "layers": "all"})
    params = sum(p.numel() for p in enc.backbone.parameters()) / 1e6
    batch = torch.from_numpy(np.stack(clips(args.clips, args.seconds)))

    def forward() -> None:
        with torch.no_grad():
            enc(batch)

    t = interleaved({"fwd": forward}, repeats=args.repeats)["fwd"]
    audio = args.clips * args.seconds
    rows = [[f"{params:.1f}M", f"{args.clips} x {args.seconds:g} s", f"{t.median:.2f}", f"{audio / t.median:.2f}",
             f"{t.spread:.0%}"]]
    body = ["### (i) Throughput, frozen, all 13 hidden states", "",
            table(["parameters", "clips", "seconds per set", "audio s / s", "IQR / median"], rows), ""]

    mem_rows = []
    runs = [(m, args.window) for m in args.minutes] + [(args.no_window_minutes, 3600.0)]
    for minutes, window in runs:
        out = subprocess.run([sys.executable, __file__, "--child", str(mem_folder), str(minutes), str(window),
                              "--threads", str(threads)], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        mem_rows.append([f"{minutes:g} min", "whole clip" if window >= 3600 else f"{window:g} s windows",
                         f"{res['frames']}", f"{res['peak_over_loaded_mb']:.0f}", f"{res['output_mb']:.0f}",
                         f"{res['seconds']:.0f}", f"{minutes * 60 / res['seconds']:.1f}"])
        print(mem_rows[-1], flush=True)
    proxy = "" if args.memory_layers == 12 else (
        f" The model here has the base front end and width with {args.memory_layers} transformer layers, so that "
        "the run fits a few minutes on this CPU: under no_grad each layer's activations are freed before the next "
        "runs, so the per-window peak is the base model's; only the weights (excluded: measured above the loaded "
        "model) and the run time differ.")
    which = "" if not proxy else f", {args.memory_layers}-layer model"
    body += [f"### (ii) Peak memory of the forward pass on one long clip (last layer{which})", "",
             table(["clip", "run as", "frames", "RSS peak above loaded model, MiB", "of which the output, MiB",
                    "seconds", "audio s / s"], mem_rows), "",
             f"Windows of {args.window:g} s overlapping by 1 s, one at a time: the peak is that of one window plus "
             "about twice the stitched output (the per-window pieces and their concatenation, both alive for a "
             "moment; the output itself any caller keeps), so it grows only with the output, while the whole "
             f"clip's attention grows with the square of its length.{proxy}", ""]

    ep = epoch_times(folder, args.clips, args.seconds, args.batch, args.repeats)
    body += ["### (iii) One training epoch: pairwise heads on cached features vs the frozen backbone each epoch",
             "", table(["audio encoder", "epoch s", "ratio"],
                       [["frozen wav2vec 2.0 base every batch (hf_audio + projection)", f"{ep['backbone']:.2f}",
                         "1"],
                        ["mlp on cached utterance means (hf_audio_cached)", f"{ep['cached']:.4f}",
                         f"{ep['backbone'] / ep['cached']:.0f}x faster"]]), "",
             f"{args.clips} clips of {args.seconds:g} s with 35-d AU vectors as the second modality, batch "
             f"{args.batch}, medians of {args.repeats} alternated epochs (IQR / median at most {ep['spread']:.0%}); "
             f"computing the cache once took {ep['cache_once']:.1f} s (one backbone pass per clip), so caching "
             "pays from the second epoch on."]
    report("backbones", "i. Speech backbones: throughput, long-clip memory, cached vs live epochs",
           "\n".join(body), not args.no_write)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
