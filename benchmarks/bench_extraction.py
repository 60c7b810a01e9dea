"""Figure c: extraction overhead over the encoders' forward passes, and peak memory as the clip count grows.

(i) Overhead. The same clips, collated once into the same batches (the data pipeline's output, held in memory),
go through (a) the model's forward pass alone (encoders + projection heads, eval mode, no gradients) and (b)
what ``extract()`` does with a batch: the forward pass, fusion, copies to numpy, label rows, the crash-safe
store writer (shard files with fsync) and the final merge into the ``.h5`` file (``open_store`` +
``write_batches``, the body of ``extract()`` without its DataLoader). The difference is the store writing,
fusion and I/O. Target: <= 10% on the demo model (the project's default experiment on its synthetic corpus).
Two tiny-MLP rows (vector inputs; the forward pass is almost free) show the writer's per-row cost on its own.

(iii) Store cost per row (section c2). The tiny-MLP extraction (8192 clips of two vector modalities; the forward
pass is almost free) with every call into the store writer timed in every repeat: opening it, ``append`` (row
checks, buffering), the row log (one record per ``part_rows`` rows) and ``finish`` (the final merge). Variants:
the default writer (Fletcher-32 checksums, no compression, fsync on), lzf compression, no checksums (to measure
their cost), fsync off, batch 1024. Target: <= 10 us per row for the default writer.

(ii) Memory. ``extract()`` end to end (its DataLoader included) over a synthetic in-memory adapter of random
vectors (two modalities, tiny MLP encoders) at 10k and 100k clips, each size in a fresh subprocess; the peak
RSS (``ru_maxrss``) is compared. Target: flat.

    .venv/bin/python benchmarks/bench_extraction.py [--threads 1 --repeats 5 --clips 192
                                                     --memory-clips 10000 100000 --memory-repeats 2]
    .venv/bin/python benchmarks/bench_extraction.py --threads 1 --store-only   # section c2 alone
    ... --baseline-commit da7f631   # c2 also times the writer alone against that commit's, alternating
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import (
    ROOT,
    apply_threads,
    base_parser,
    current_rss_mb,
    high_water_mb,
    interleaved,
    ms,
    report,
    table,
    verdict,
)
from extraction_setup import SPEAKERS, BenchVectors, Breakdown, demo_config, materialise, vector_config
from store_cost import store_cost, write_store_section, writer_against

from contrastive_mer.extract.extraction import ExtractOptions, extract, open_store, write_batches
from contrastive_mer.extract.shards import shard_attrs
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter
from contrastive_mer.store.merge import find_shards, merge_shards, shard_store_path

TARGET_OVERHEAD = 0.10
TARGET_MEMORY_GROWTH = 0.10  # "flat": peak RSS at 10x the clips within +10%
MEMORY_BATCH = 256
MERGE_SHARDS = 4


def overhead_case(name: str, cfg, clips: int, batch: int, repeats: int, warmup: int, tmp: Path,
                  sequences: tuple[str, ...] = ()) -> tuple[list[Any], float, dict[str, float]]:
    torch.manual_seed(0)
    module = PairwiseContrastiveModule(cfg).eval()
    device = torch.device("cpu")
    adapter, records, batches = materialise(cfg, clips, batch)
    rows = sum(len(b) for b in batches)
    out = tmp / f"{name.split()[0]}.h5"
    opts = ExtractOptions(batch_size=batch, progress=False, overwrite=True, sequences=sequences)

    inner: list[float] = []  # forward seconds inside each extraction call (direct measure)
    clock = {"forward": 0.0}
    forward = module.forward

    def timed_forward(*a: Any, **kw: Any) -> Any:  # wraps both variants alike (one clock read per batch)
        start = time.perf_counter()
        try:
            return forward(*a, **kw)
        finally:
            clock["forward"] += time.perf_counter() - start

    module.forward = timed_forward

    @torch.no_grad()
    def forward_only() -> None:
        for b in batches:
            module(b.to(device))

    def extraction() -> None:
        clock["forward"] = 0.0
        writer, specs = open_store(module, cfg, out, opts, adapter=adapter, records=records, checkpoint_sha256="bench")
        write_batches(module, batches, writer, specs, opts=opts, device=device)
        inner.append(clock["forward"])

    t = interleaved({"forward": forward_only, "extract": extraction}, repeats, warmup)
    del module.forward
    with FeatureStore(out) as store:  # what was timed wrote every row
        assert len(store) == rows, (len(store), rows)
        size_mb = out.stat().st_size / 2 ** 20
    parts = Breakdown(module).run(extraction)
    parts["store"] = sum(parts[k] for k in ("open", "rows", "row log", "final merge"))
    ab = t["extract"].median / t["forward"].median - 1
    direct = statistics.median(total / fwd - 1 for total, fwd in zip(t["extract"].samples, inner[warmup:]))
    row = [name, rows, batch, ms(t["forward"].median), ms(t["extract"].median), f"{ab:+.1%}", f"{direct:+.1%}",
           f"{t['forward'].spread:.0%} / {t['extract'].spread:.0%}", f"{size_mb:.2f}"]
    return row, direct, parts


# ---------------------------------------------------------------------------------------------- (iii) store cost
def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark to the current RSS (Linux >= 4.0), so that the transient peak
    of the imports does not hide the work's own; False where unsupported (the peak then includes the imports)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_memory(clips: int, batch: int, out_dir: str) -> None:
    """Runs in a fresh process: one extraction of ``clips`` vectors; prints RSS figures as JSON."""
    base = current_rss_mb()
    reset = reset_peak_rss()
    cfg = vector_config(clips)
    torch.manual_seed(0)
    module = PairwiseContrastiveModule(cfg)
    adapter = BenchVectors(clips)
    records = adapter.records()
    after_records = current_rss_mb()
    loop_peak = {}
    finish = FeatureStoreWriter.finish

    def finish_noting_peak(self: FeatureStoreWriter) -> Path:
        loop_peak["peak"] = high_water_mb()
        return finish(self)

    FeatureStoreWriter.finish = finish_noting_peak
    start = time.perf_counter()
    out = extract(module, cfg, Path(out_dir) / f"mem{clips}.h5",
                  ExtractOptions(batch_size=batch, progress=False, overwrite=True), adapter=adapter, records=records)
    seconds = time.perf_counter() - start
    with FeatureStore(out) as store:
        n = len(store)
    print(json.dumps({"clips": n, "base": base, "records": after_records - base, "loop_peak": loop_peak["peak"],
                      "peak": high_water_mb(), "seconds": seconds, "reset": reset}))


def child_write_shards(rows: int, shards: int, out_dir: str) -> None:
    """Writes ``shards`` stores of random rows shaped like the vector extraction's (round-robin by id)."""
    rng = np.random.default_rng(0)
    out = Path(out_dir) / f"merge{rows}.h5"
    ids = [f"clip{k:07d}" for k in range(rows)]
    for s in range(shards):
        mine = ids[s::shards]
        writer = FeatureStoreWriter(shard_store_path(out, s, shards), ["au", "physio"], {"au": 64, "physio": 64}, 32,
                                    fused_dims={"concat": 128, "mean": 64},
                                    labels={"emotion": [f"e{i}" for i in range(8)]},
                                    groups=["speaker"], attrs=shard_attrs(s, shards), part_rows=4096,
                                    overwrite=True, fsync=False)
        for b in range(0, len(mine), 4096):
            part = mine[b:b + 4096]
            n = len(part)
            vec = lambda d: rng.standard_normal((n, d), dtype=np.float32)  # noqa: E731
            writer.append(part, {"emotion": rng.integers(0, 8, n)}, {"speaker": [SPEAKERS[0]] * n},
                          {"au": vec(64), "physio": vec(64)}, projections={"au": vec(32), "physio": vec(32)},
                          present={"au": np.ones(n, bool), "physio": np.ones(n, bool)},
                          fused={"concat": vec(128), "mean": vec(64)})
        writer.finish()


def child_merge(rows: int, shards: int, out_dir: str) -> None:
    """Runs in a fresh process: merges the shards written by :func:`child_write_shards`; prints RSS figures."""
    base = current_rss_mb()
    reset = reset_peak_rss()
    out = Path(out_dir) / f"merge{rows}.h5"
    start = time.perf_counter()
    merge_shards(find_shards(out), out, overwrite=True)
    seconds = time.perf_counter() - start
    with FeatureStore(out) as store:
        n = len(store)
    print(json.dumps({"clips": n, "base": base, "peak": high_water_mb(), "seconds": seconds, "reset": reset}))


def run_child(mode: str, clips: int, threads: int | None, out_dir: str) -> dict[str, float]:
    """Run this script as ``--child MODE`` in a fresh interpreter; return the JSON it prints last."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--child-clips", str(clips),
           "--out-dir", out_dir] + (["--threads", str(threads)] if threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child for {clips} clips failed:\n{proc.stderr[-3000:]}")
    if mode == "write-shards":
        return {}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["reset"] = float(result["reset"])
    if result["clips"] != clips:
        raise SystemExit(f"{mode} child stored {result['clips']} of {clips} clips")
    return result


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=7)
    parser.add_argument("--clips", type=int, default=576,
                        help="clips for the overhead figure (demo model; 576 = the whole synthetic corpus)")
    parser.add_argument("--vector-clips", type=int, default=8192, help="clips for the tiny-MLP overhead rows")
    parser.add_argument("--batch", type=int, default=32, help="batch size (demo model; the MLP rows use 256)")
    parser.add_argument("--memory-clips", type=int, nargs="+", default=[10_000, 100_000],
                        help="clip counts for the memory figure (the target compares the first two)")
    parser.add_argument("--memory-repeats", type=int, default=2)
    parser.add_argument("--store-only", action="store_true", help="only section c2 (store cost per row)")
    parser.add_argument("--baseline-commit", help="c2: also time the writer alone against this commit's")
    parser.add_argument("--child", choices=["extract", "write-shards", "merge"], help=argparse.SUPPRESS)
    parser.add_argument("--child-clips", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    apply_threads(args.threads)
    if args.child is not None:
        {"extract": lambda: child_memory(args.child_clips, MEMORY_BATCH, args.out_dir),
         "write-shards": lambda: child_write_shards(args.child_clips, MERGE_SHARDS, args.out_dir),
         "merge": lambda: child_merge(args.child_clips, MERGE_SHARDS, args.out_dir)}[args.child]()
        return

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as tmp:
        store_rows, store_med = store_cost(args.vector_clips, args.repeats, args.warmup, Path(tmp))
    against = writer_against(args.baseline_commit, args.repeats) if args.baseline_commit else []
    load_after = os.getloadavg()
    write_store_section(args, store_rows, store_med, load_before, load_after, against)
    if args.store_only:
        return

    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as tmp:
        tmp = Path(tmp)
        rows, breakdowns = [], []
        row, ratio_demo, parts = overhead_case("demo model (audio TCN, video resnet10t, text)", demo_config(),
                                               args.clips, args.batch, args.repeats, args.warmup, tmp)
        rows.append(row + [verdict(ratio_demo <= TARGET_OVERHEAD)])
        breakdowns.append(("demo model", parts))
        vcfg = vector_config(args.vector_clips)
        for vbatch in (256, 1024):
            row, _, parts = overhead_case(f"tiny MLPs on 2 vector modalities, batch {vbatch}", vcfg,
                                          args.vector_clips, vbatch, args.repeats, args.warmup, tmp)
            rows.append(row + ["(no target)"])
            breakdowns.append((f"tiny MLPs, batch {vbatch}", parts))

        mem: dict[int, list[dict[str, float]]] = {n: [] for n in args.memory_clips}
        merged: dict[int, list[dict[str, float]]] = {n: [] for n in args.memory_clips}
        for n in args.memory_clips:
            run_child("write-shards", n, args.threads, str(tmp))
        for _ in range(args.memory_repeats):
            for n in args.memory_clips:
                mem[n].append(run_child("extract", n, args.threads, str(tmp)))
                merged[n].append(run_child("merge", n, args.threads, str(tmp)))

    med = {n: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for n, runs in mem.items()}
    med_merge = {n: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for n, runs in merged.items()}
    small, large = args.memory_clips[:2]
    own = {n: m["peak"] - m["records"] for n, m in med.items()}  # peak without the caller's record list
    growth = own[large] / own[small] - 1
    total_growth = med[large]["peak"] / med[small]["peak"] - 1
    merge_growth = med_merge[large]["peak"] / med_merge[small]["peak"] - 1
    mem_rows = [[f"{n:,}", f"{m['base']:.0f}", f"{m['records']:.1f}", f"{m['loop_peak']:.0f}", f"{m['peak']:.0f}",
                 f"{m['peak'] - m['base'] - m['records']:.0f}", f"{m['seconds']:.1f}", f"{n / m['seconds']:.0f}"]
                for n, m in med.items()]
    merge_rows = [[f"{n:,}", MERGE_SHARDS, f"{m['base']:.0f}", f"{m['peak']:.0f}", f"{m['peak'] - m['base']:.0f}",
                   f"{m['seconds']:.1f}"] for n, m in med_merge.items()]
    per_clip = (own[large] - own[small]) * 2 ** 20 / (large - small)

    demo, mlp = rows[0], rows[1]
    per_row_us = (mlp[4] - mlp[3]) / mlp[1] * 1e3  # store + fusion per row, where the forward is nearly free
    fwd_per_clip_us = demo[3] / demo[1] * 1e3
    fixed_ms = ratio_demo * demo[3] - per_row_us * demo[1] / 1e3  # from the direct measure (less noisy)
    parts_text = "; ".join(f"{name}: " + ", ".join(f"{k} {p[k] / p['total']:.0%}" for k in p
                                                   if k not in ("total", "store"))
                           for name, p in breakdowns)
    body = ("### (i) Overhead of extraction over the forward passes\n\n" + table(
        ["model", "clips", "batch", "forward only ms", "extract ms", "A/B: extract vs forward only",
         "direct: time outside forward / forward", "IQR / median (fwd / extract)", "store MiB",
         f"target <= {TARGET_OVERHEAD:.0%}"], rows))
    body += (f"\n\nMedians of {args.repeats} interleaved repeats after {args.warmup} warm-up; CPU. Both variants "
             "consume the same pre-collated batches (the data pipeline is not timed). The extract variant runs "
             "`open_store` + `write_batches` (the body of `extract()` minus its DataLoader): forward, fusion "
             "(concat, mean), numpy copies, the writer's row checks, shard files (fsync each) and the final "
             "merge. Two measures: A/B divides the medians of the two variants, and so carries the noise of "
             "two separately timed runs on a shared machine; direct takes, within each extract run, the time "
             "outside the forward passes (timed around `module.forward`) over the time inside them (median over "
             "the runs). Target (judged on the direct measure, the demo model): "
             f"{verdict(ratio_demo <= TARGET_OVERHEAD)}.\n\n"
             f"Scaling: the MLP rows put the store's cost (with fusion) at about {per_row_us:.0f} us per row; the "
             f"demo model's forward pass takes {fwd_per_clip_us:.0f} us per clip here, so for long extractions "
             f"the overhead tends to about {per_row_us / fwd_per_clip_us:.0%}; the rest of the demo row's time "
             f"outside the forward passes, about {fixed_ms:.0f} ms, is a fixed cost per extraction, which weighs "
             "more on small corpora.\n\n"
             f"Where the extract time goes (one instrumented run each; open = creating the writer, rows = its "
             f"checks and buffering, row log = appending records, rest = fusion, copies to numpy, label rows): "
             f"{parts_text}. The store's own cost per row, measured in every repeat, is section c2.\n\n")
    body += ("### (ii) Peak memory as the clip count grows\n\n" + table(
        ["clips", "RSS after imports MiB", "record list MiB", "peak before finish() MiB", "peak RSS MiB",
         "peak - imports - records MiB", "seconds", "clips / s"], mem_rows))
    body += (f"\n\n`extract()` end to end (DataLoader in the process, batch {MEMORY_BATCH}, fusion concat + mean, "
             "no sequences) over an in-memory adapter of random vectors (35-d and 64-d inputs, tiny MLP encoders "
             f"64-d, projections 32-d), each size in a fresh subprocess, median of {args.memory_repeats}. "
             f"{PEAK_NOTE if all(m['reset'] for m in med.values()) else PEAK_NOTE_NO_RESET} From "
             f"{small:,} to {large:,} clips the peak RSS without the caller's record list grows {growth:+.1%} "
             f"({per_clip:.0f} bytes per extra clip; with the record list {total_growth:+.1%}); the work's own "
             f"share (peak - imports - records) goes from {own[small] - med[small]['base']:.0f} to "
             f"{own[large] - med[large]['base']:.0f} MiB, most of it in `finish()` (compare the peak before it). "
             "Target (flat: "
             f"<= +{TARGET_MEMORY_GROWTH:.0%} without the record list): "
             f"{verdict(growth <= TARGET_MEMORY_GROWTH)}.\n\n")
    body += ("Shard merge (`merge_shards`, fresh subprocess, the same row layout, rows dealt round-robin by id "
             f"over {MERGE_SHARDS} shards):\n\n" + table(
                 ["rows", "shards", "RSS after imports MiB", "peak RSS MiB", "peak - imports MiB", "seconds"],
                 merge_rows))
    body += (f"\n\nPeak RSS of the merge from {small:,} to {large:,} rows: {merge_growth:+.1%}.\n\n"
             "What limits it: " + LIMITS)
    report("extraction", "c. Extraction: overhead over the forward passes, memory as N grows", body,
           not args.no_write)


PEAK_NOTE = ("Peak = the RSS high-water mark, reset once the imports are done (their transient peak would "
             "hide the work's own), so it covers building the model, listing the records and the extraction.")
PEAK_NOTE_NO_RESET = ("Peak = the RSS high-water mark since the process started (this kernel cannot reset it, so "
                      "the imports' transient peak may hide the work's own).")

LIMITS = (
    "time: the store's cost is a fixed part per extraction (creating the parts folder, manifest and row log, "
    "writing the final file, two fsyncs) plus a part per row (section c2: a record appended to the row log "
    "every `part_rows`=256 rows, then `finish()` streaming the log into whole chunks of the final file). With "
    "the demo model on a CPU the forward pass dominates; with nearly free encoders (the MLP rows) the store "
    "and the fusion and copies around it are most of it, and the same holds on a GPU, where the forward pass "
    "is 10-100x faster. Memory: the rows stream through; during the loop (peak before `finish()`) only the "
    "record list and the ids the writer keeps for exact resume and duplicate checks grow with N (about 100 "
    "bytes per clip); `finish()` holds about 1 MiB per dataset before each write and no chunk cache. The "
    "shard merge writes blocks of about 4 MiB the same way (ids read in slices, shards reopened every 64 MiB); "
    "its peak grows with the ids, their sort order and HDF5's bookkeeping of variable-length strings (ids, "
    "groups), about 0.3 KiB per row, not with the width of the features.")


if __name__ == "__main__":
    main()
