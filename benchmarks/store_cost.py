"""Section c2 of ``bench_extraction.py``: the feature store's own cost per row on the tiny-MLP extraction, and the
writer alone against an earlier commit's (``--baseline-commit``)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from common import ROOT, interleaved, report, table, verdict
from extraction_setup import Breakdown, materialise, vector_config

import contrastive_mer.extract.extraction as extraction_mod
from contrastive_mer.extract.extraction import ExtractOptions, open_store, write_batches
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.store import _layout
from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter

TARGET_STORE_US = 10.0  # store cost per row, tiny-MLP extraction (issue 15)


def writer_with(**options: Any) -> type[FeatureStoreWriter]:
    """``FeatureStoreWriter`` with some constructor options fixed (what ``open_store`` builds)."""

    class Writer(FeatureStoreWriter):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **{**kw, **options})

    return Writer


STORE_VARIANTS: list[tuple[str, int, dict[str, Any], bool]] = [
    ("default (Fletcher-32, no compression, fsync)", 256, {}, True),
    ("lzf compression", 256, {"compression": "lzf"}, True),
    ("no Fletcher-32 checksums", 256, {}, False),
    ("fsync off", 256, {"fsync": False}, True),
    ("default, batch 1024", 1024, {}, True),
]


def store_cost(clips: int, repeats: int, warmup: int,
               tmp: Path) -> tuple[list[list[Any]], dict[str, dict[str, float]]]:
    """Section c2: per variant, medians over ``repeats`` extractions (every one instrumented) of the time in the
    forward pass, in each writer method and in the rest, per row; forward-only runs interleaved with them."""
    cfg = vector_config(clips)
    torch.manual_seed(0)
    module = PairwiseContrastiveModule(cfg).eval()
    device = torch.device("cpu")
    materialised = {b: materialise(cfg, clips, b) for b in sorted({v[1] for v in STORE_VARIANTS})}
    rows_out: list[list[Any]] = []
    meds: dict[str, dict[str, float]] = {}
    for name, batch, options, checksums in STORE_VARIANTS:
        adapter, records, batches = materialised[batch]
        n = sum(len(b) for b in batches)
        out = tmp / "store.h5"
        opts = ExtractOptions(batch_size=batch, progress=False, overwrite=True)
        samples: list[dict[str, float]] = []

        @torch.no_grad()
        def forward_only() -> None:
            for b in batches:
                module(b.to(device))

        def extraction() -> None:
            writer, specs = open_store(module, cfg, out, opts, adapter=adapter, records=records,
                                       checkpoint_sha256="bench")
            write_batches(module, batches, writer, specs, opts=opts, device=device)

        def timed_extraction() -> None:
            samples.append(Breakdown(module).run(extraction))

        extraction_mod.FeatureStoreWriter = writer_with(**options)  # type: ignore[misc]
        _layout.CHECKSUMS = checksums
        try:
            t = interleaved({"forward": forward_only, "extract": timed_extraction}, repeats, warmup)
        finally:
            extraction_mod.FeatureStoreWriter = FeatureStoreWriter  # type: ignore[misc]
            _layout.CHECKSUMS = True
        with FeatureStore(out) as store:
            assert len(store) == n, (len(store), n)
        size_mb = out.stat().st_size / 2 ** 20
        timed = samples[warmup:]
        for sample in timed:
            for prefix in ("", "cpu "):
                sample[prefix + "store"] = sum(sample[prefix + k] for k in ("open", "rows", "row log", "final merge"))
        med = {k: statistics.median(s[k] for s in timed) * 1e6 / n for k in timed[0]}
        ab = (t["extract"].median - t["forward"].median) * 1e6 / n
        rows_out.append([name, n, batch, f"{med['forward']:.1f}", f"{med['store']:.1f}", f"{med['cpu store']:.1f}",
                         f"{med['open']:.2f}",
                         f"{med['rows']:.2f}", f"{med['row log']:.2f}", f"{med['final merge']:.2f}",
                         f"{med['rest']:.1f}", f"{ab:.1f}", f"{size_mb:.2f}"])
        meds[name] = med
    return rows_out, meds


WRITER_ALONE = r"""
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from pathlib import Path
from contrastive_mer.store.hdf5 import FeatureStoreWriter
rng, b, n = np.random.default_rng(0), 256, 8192
vec = lambda d: rng.standard_normal((b, d), dtype=np.float32)
batches = [([f"clip{j:07d}" for j in range(k, k + b)], {"emotion": rng.integers(0, 8, b)}, {"speaker": ["spk01"] * b},
            {"au": vec(64), "physio": vec(64)}, {"au": vec(32), "physio": vec(32)},
            {"au": np.ones(b, bool), "physio": np.ones(b, bool)}, {"concat": vec(128), "mean": vec(64)})
           for k in range(0, n, b)]
out = []
for r in range(4):  # the first is a warm-up
    with tempfile.TemporaryDirectory() as tmp:
        w0, c0 = time.perf_counter(), time.process_time()
        w = FeatureStoreWriter(Path(tmp) / "x.h5", ["au", "physio"], {"au": 64, "physio": 64}, 32,
                               {"concat": 128, "mean": 64}, labels={"emotion": [f"e{i}" for i in range(8)]},
                               groups=["speaker"], part_rows=256)
        for batch in batches:
            ids, labels, groups, features, projections, present, fused = batch
            w.append(ids, labels, groups, features, projections=projections, present=present, fused=fused)
        w.finish()
        out.append(((time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6))
print(json.dumps(out[1:]))
"""


def writer_against(commit: str, rounds: int) -> list[list[Any]]:
    """The writer alone (8192 rows shaped like the tiny-MLP extraction's, batch 256, fsync on) from this tree
    and from ``commit`` (its ``contrastive_mer`` via ``git archive``), in fresh processes taking turns."""
    with tempfile.TemporaryDirectory(prefix="bench_store_ab_") as tmp:
        trees = {"this tree": str(ROOT), commit: tmp}
        archive = subprocess.run(["git", "archive", commit, "contrastive_mer"], cwd=ROOT, capture_output=True,
                                 check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        got: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for r in range(rounds):
            for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                proc = subprocess.run([sys.executable, "-c", WRITER_ALONE, trees[name]], capture_output=True,
                                      text=True, cwd=tmp)
                if proc.returncode != 0:
                    raise SystemExit(f"writer of {name} failed:\n{proc.stderr[-2000:]}")
                got[name] += [tuple(x) for x in json.loads(proc.stdout.strip().splitlines()[-1])]
    med = {name: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for name, v in got.items()}
    old = med[commit]
    return [[name, len(got[name]), f"{w:.1f}", f"{c:.1f}", f"{old[0] / w:.1f}x", f"{old[1] / c:.1f}x"]
            for name, (w, c) in med.items()]


# ---------------------------------------------------------------------------------------------- (ii) memory


def write_store_section(args: argparse.Namespace, rows: list[list[Any]], meds: dict[str, dict[str, float]],
                        load_before: tuple[float, ...], load_after: tuple[float, ...],
                        against: list[list[Any]]) -> None:
    names = [v[0] for v in STORE_VARIANTS]
    med = meds[names[0]]

    def extra(name: str, sign: int = 1) -> str:  # what a variant adds over the default, wall and CPU
        other = meds[name]
        return (f"{sign * (other['store'] - med['store']):+.1f} us wall, "
                f"{sign * (other['cpu store'] - med['cpu store']):+.1f} us CPU per row")

    met = med["store"] <= TARGET_STORE_US
    body = table(["writer", "rows", "batch", "forward us/row", "store us/row", "store CPU us/row", "open",
                  "append (checks)",
                  "row log", "final merge", "rest us/row (fusion, numpy copies)", "A/B: extract - forward us/row",
                  "store MiB"], rows)
    body += (f"\n\nMedians of {args.repeats} interleaved repeats after {args.warmup} warm-up (forward-only runs "
             "alternate with extractions); CPU; load average (1, 5, 15 min) "
             f"{', '.join(f'{x:.2f}' for x in load_before)} before and {', '.join(f'{x:.2f}' for x in load_after)} "
             "after, on 2 shared cores. store = the wall time inside the writer's methods (open, append, row log "
             "records, finish), from timers around them in every timed extraction (the next four columns split "
             "it); store CPU = the same in this process's CPU time, which other jobs on the machine inflate "
             "much less (it leaves out waiting for fsync and for a core); rest = the rest of the wall time "
             "outside the forward pass (fusion, copies to numpy, label rows); A/B = extract minus forward-only, "
             "both medians (noisier). Target (store cost per row, default writer, "
             f"<= {TARGET_STORE_US:.0f} us, wall): {verdict(met)} ({med['store']:.1f} us wall, "
             f"{med['cpu store']:.1f} us CPU).\n\n")
    if against:
        body += ("The writer alone against an earlier commit's, in the same run (fresh processes taking turns, "
                 f"{args.repeats} rounds of 3 timed writes each after a warm-up; 8192 rows shaped like the "
                 "extraction's, batch 256, `part_rows` 256, fsync on; wall and CPU time from the writer's "
                 "construction to the end of `finish()`):\n\n" + table(
                     ["writer", "writes", "wall us/row", "CPU us/row", "speed-up (wall)", "speed-up (CPU)"], against)
                 + "\n\n")
    body += (STORE_NOTE + f" Measured here: the Fletcher-32 checksums cost {extra(names[2], -1)}; lzf "
             f"{extra(names[1])}; fsync (of the final file, the log not being synced in a run this short) "
             f"{extra(names[3], -1)}.")
    report("extraction-store", "c2. Store cost per row (tiny-MLP extraction)", body, not args.no_write)


STORE_NOTE = (
    "Where the time goes (default writer): `append` checks each batch against the schema and buffers it; every "
    "`part_rows`=256 rows the buffer becomes one record of the row log (`<out>.parts/rows.log`: the rows' bytes "
    "with a CRC-32, one `writev` call, no HDF5, no fsync; the log is fdatasync-ed when a second has passed since "
    "the last sync, so a run this short syncs only at the end); `finish` reads the log back (page cache), writes "
    "each dataset of the final file in runs of whole chunks (about 1 MiB per write, no chunk cache, nothing read "
    "back or compressed twice) with a Fletcher-32 checksum per chunk and a SHA-256 over the id and group "
    "strings, fsyncs it, and renames it into place. What remains per row: the bytes copied about four times "
    "(batch to record, record to page cache, back, into HDF5), the CRC and checksums, HDF5's per-string work "
    "for the variable-length ids and groups (about a third of the merge), and the fsync of the final file. lzf "
    "saves nothing on dense projections (about a third on ReLU features): off by default, "
    "`compression=\"lzf\"` for `FeatureStoreWriter`. Before this writer (an HDF5 part file per 256 rows, two "
    "fsyncs each, a merge through HDF5's chunk cache with lzf) the same extraction cost about 53 us per row "
    "(section c, its earlier run).")

