"""Figure g: the demo's headline numbers over several seeds (representation quality, not speed).

One `cmer demo` per seed, each with its own corpus (``data.options.seed``: other speakers, other clips) and its
own training seed. Reports, per seed and as mean and standard deviation, the linear-probe accuracy on the
held-out speakers of the fused features (concat, the paper's fusion; and mean) for the pretrained encoders, the
same encoders at random init and the raw-input baseline, and the best single modality of the pretrained ones.
A single seed can mislead by several points: the corpus seed alone moves the random-init baseline by ~8.

    .venv/bin/python benchmarks/bench_demo_seeds.py [--seeds 0 1 2] [--out runs/demo-seeds] [overrides ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import BENCHMARKS_MD, apply_threads, report, table

from contrastive_mer.workflows.demo import run_demo

MODALITIES = ("audio", "video", "text")


def headline(report_table: dict[str, dict[str, float]]) -> dict[str, float]:
    """The numbers of one demo run (percent)."""
    get = lambda view, column: 100 * report_table[view][f"{column}/linear"]  # noqa: E731
    return {
        "pretrained concat": get("fused/concat", "pretrained"),
        "random-init concat": get("fused/concat", "random_init"),
        "raw input fused": get("fused", "raw_input"),
        "pretrained mean": get("fused/mean", "pretrained"),
        "random-init mean": get("fused/mean", "random_init"),
        "best single (pretrained)": max(get(m, "pretrained") for m in MODALITIES if m in report_table),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/demo-seeds", help="one run folder per seed below this")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {BENCHMARKS_MD.name} alone")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    apply_threads(args.threads)

    rows, per_seed = [], []
    start = time.perf_counter()
    for seed in args.seeds:
        overrides = [f"seed={seed}", f"data.options.seed={seed}", *args.overrides]
        result = run_demo(Path(args.out) / f"seed{seed}", overrides=overrides)
        numbers = headline(result["table"])
        per_seed.append(numbers)
        gap = numbers["pretrained concat"] - numbers["random-init concat"]
        rows.append([seed, *(round(v, 1) for v in numbers.values()), round(gap, 1), round(result["seconds"])])
    keys = list(per_seed[0])
    gaps = [n["pretrained concat"] - n["random-init concat"] for n in per_seed]

    def mean_sd(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.1f} ± {sd:.1f}"

    rows.append(["mean ± sd", *(mean_sd([n[k] for n in per_seed]) for k in keys), mean_sd(gaps), ""])
    body = (f"Held-out speakers, emotion accuracy of a linear probe (%), one demo per seed "
            f"(`experiments/demo.yaml`{' + ' + ' '.join(args.overrides) if args.overrides else ''}); "
            f"{time.perf_counter() - start:.0f} s in all.\n\n"
            + table(["seed", *keys, "concat gain over random-init", "demo s"], rows))
    report("g", "g. Demo headline over seeds (fused linear probe on held-out speakers)", body, not args.no_write)


if __name__ == "__main__":
    main()
