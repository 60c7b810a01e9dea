"""RAVDESS recipe runs behind the README's "Real recordings" table: pretrain, then ``cmer evaluate`` probes.

Three protocols, each with several pretraining seeds (mean ± sd over seeds of the fold-mean accuracy):

* ``tune``: pretrain on actors 01-12 only, 4-fold actor-grouped CV on actors 01-12 (where settings are chosen);
* ``holdout``: pretrain on actors 01-12, probes trained on 01-12 and tested once on actors 13-16;
* ``cv16``: pretrain on actors 01-16, 4-fold actor-grouped CV on 01-16 (the issue's headline protocol;
  pretraining sees the test folds' clips without labels, as the per-speaker statistics do).

    python benchmarks/ravdess_recipe.py --protocol cv16 --seeds 0 1 2 --out runs/recipe [key=value ...]
    python benchmarks/ravdess_recipe.py --protocol cv16 --seeds 1 2 --pretrained-only --out runs/recipe-more
    python benchmarks/ravdess_recipe.py --protocol cv16 --out runs/recipe --collect runs/recipe/cv16-seed0 ...

Writes ``<out>/<protocol>-seed<k>/`` (run + evaluation) and ``<out>/<protocol>.json`` / ``.md`` (summary). The
overrides apply to the experiment config (default ``experiments/ravdess_speaker.yaml``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import load_module
from contrastive_mer.pretrain.loop import pretrain
from contrastive_mer.utils import file_sha256
from contrastive_mer.workflows.comparison import COLUMNS, evaluate_folds

ROOT = Path(__file__).resolve().parents[1]
TUNE_ACTORS = list(range(1, 13))
TEST_GROUPS = [f"actor{a:02d}" for a in range(13, 17)]


def run_one(protocol: str, seed: int, out: Path, config: Path, overrides: list[str],
            columns: tuple[str, ...] = COLUMNS, transductive: bool = False) -> dict:
    """Pretrain one seed under ``protocol`` and evaluate it; returns the evaluation table."""
    base = [f"seed={seed}", "trainer.enable_progress_bar=false", *overrides]
    pre = base + ([f"data.options.speakers={TUNE_ACTORS}"] if protocol in ("tune", "holdout") else [])
    cfg = load_config(config, pre)
    run_dir = out / f"{protocol}-seed{seed}"
    result = pretrain(cfg, run_dir, overwrite=True)
    module = load_module(str(result.checkpoint))
    # evaluation reads every actor of the protocol: 01-12 for tune, 01-16 otherwise
    ev = load_config(config, base + ([f"data.options.speakers={TUNE_ACTORS}"] if protocol == "tune" else []))
    report = evaluate_folds(ev, module, run_dir / "eval", label="emotion", group="speaker", folds=4,
                            probes=("linear",), checkpoint_sha256=file_sha256(result.checkpoint),
                            fusion_modes=("concat",), normalize_by="speaker",
                            test_groups=TEST_GROUPS if protocol == "holdout" else None, columns=columns,
                            transductive=transductive)
    return {"seed": seed, "transductive": transductive, "pretrain_seconds": result.seconds, "table": report["table"],
            "strongest_baseline": report["strongest_baseline"], "headline": report["headline"]}


def collected(run_dir: Path) -> dict:
    """A finished run's record from its folder (``<protocol>-seed<k>/eval/evaluation.json``)."""
    report = json.loads((run_dir / "eval" / "evaluation.json").read_text())
    seed = int(run_dir.name.rsplit("seed", 1)[1])
    return {"seed": seed, "run": str(run_dir), "table": report["table"],
            "strongest_baseline": report["strongest_baseline"], "headline": report["headline"]}


def summarise(runs: list[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{view: {column: (mean, sd, n)}}`` of the linear-probe values over the runs that have them."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for view, cells in r["table"].items():
            for key, value in cells.items():
                if key.endswith("/linear"):
                    out.setdefault(view, {}).setdefault(key.split("/")[0], []).append(value)
    return {v: {c: (float(np.mean(x)), float(np.std(x)), len(x)) for c, x in cols.items()}
            for v, cols in out.items()}


def markdown(summary: dict, protocol: str, seeds: list[int]) -> str:
    """The summary as a markdown table: ``mean ± sd (n runs)``, or the single value of one run."""
    cols = ("pretrained", "random_init", "raw_input")
    lines = [f"{protocol}: linear probe accuracy (%), mean ± sd over pretraining seeds {seeds} "
             "(a value without ± comes from one run)", "",
             "| view | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]

    def cell(value: tuple[float, float, int] | None) -> str:
        if value is None:
            return ""
        mean, sd, n = value
        return f"{100 * mean:.1f}" if n == 1 else f"{100 * mean:.1f} ± {100 * sd:.1f}"

    for view, cells in summary.items():
        lines.append(f"| {view} | " + " | ".join(cell(cells.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=["tune", "holdout", "cv16"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=ROOT / "experiments" / "ravdess_speaker.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recipe")
    parser.add_argument("--pretrained-only", action="store_true",
                        help="probe only the pretrained features (random-init and raw columns do not depend on the "
                             "pretraining seed: run them once, for the first seed)")
    parser.add_argument("--collect", type=Path, nargs="*", default=None,
                        help="summarise finished runs (<run>/eval/evaluation.json) instead of running")
    parser.add_argument("--transductive", action="store_true",
                        help="declare that pretraining saw the test speakers' unlabelled clips (recorded in every "
                             "evaluation.json and at the top of evaluation.txt, as cmer evaluate --transductive)")
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.collect is not None:
        runs = [collected(path) for path in args.collect]
        args.seeds = [r["seed"] for r in runs]
    else:
        columns = ("pretrained",) if args.pretrained_only else COLUMNS
        runs = [run_one(args.protocol, s, args.out, args.config, args.overrides, columns, args.transductive)
                for s in args.seeds]
    summary = summarise(runs)
    text = markdown(summary, args.protocol, args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"protocol": args.protocol, "transductive": args.transductive, "seeds": args.seeds,
              "overrides": args.overrides, "config": str(args.config), "runs": runs, "summary": summary,
              "seconds": time.perf_counter() - start}
    (args.out / f"{args.protocol}.json").write_text(json.dumps(record, indent=1))
    (args.out / f"{args.protocol}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
