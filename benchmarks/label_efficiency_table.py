"""Issue 21's README tables from several ``cmer evaluate --labels-per-class`` reports (one per pretraining seed):
accuracy with K labelled clips per class and with all labels, mean ± sd over the seeds (each seed's value is the
mean over its draws and folds), for chosen views of the pretrained, random-init and raw-input columns.

    python benchmarks/label_efficiency_table.py runs/fl/cv16-s{0,1,2}/eval/evaluation.json \
        --view fused="fused/concat@speaker,fused@speaker" --view voice="egemaps@speaker,egemaps@speaker"

``--view NAME=PRETRAINED_VIEW,RAW_VIEW``: the store view (pretrained and random-init columns) and the raw-input
view shown on the row ``NAME``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COLUMNS = ("pretrained", "random_init", "raw_input")


def cell(values: list[float]) -> str:
    if not values:
        return ""
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def few(report: dict, column: str, view: str, k: int) -> float | None:
    rows = report.get("label_efficiency", {}).get(column, {}).get("rows", [])
    hit = [r for r in rows if r["view"] == view and r["probe"] == "linear" and r["k"] == k]
    return float(hit[0]["mean"]) if hit else None


def full(report: dict, column: str, view: str) -> float | None:
    for row in report["probes"].get(column, {}).get("rows", []):
        if row["view"] == view and row["probe"] == "linear":
            return float(row["metrics"][report["metric"]])
    return None


def gap(reports: list[dict], view: str, read) -> str:  # type: ignore[no-untyped-def]
    """Mean over seeds of the pretrained column minus that of the random-init column, in points."""
    means = []
    for column in ("pretrained", "random_init"):
        values = [v for r in reports if (v := read(r, column, view)) is not None]
        if not values:
            return ""
        means.append(float(np.mean(values)))
    return f"{100 * (means[0] - means[1]):+.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", type=Path, nargs="+")
    parser.add_argument("--view", action="append", required=True, help="NAME=STORE_VIEW,RAW_VIEW")
    parser.add_argument("--raw-reports", type=Path, nargs="+", default=None,
                        help="reports the raw-input column is read from (default: all; the raw inputs do not depend "
                             "on the pretraining seed)")
    args = parser.parse_args()
    reports = [json.loads(p.read_text()) for p in args.reports]
    raw_reports = [json.loads(p.read_text()) for p in args.raw_reports] if args.raw_reports else reports
    ks = reports[0]["label_efficiency"]["pretrained"]["ks"]
    head = ["view", "column", *(f"k={k}" for k in ks), "all labels"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for spec in args.view:
        name, views = spec.split("=", 1)
        store_view, raw_view = views.split(",")
        for column in COLUMNS:
            view = raw_view if column == "raw_input" else store_view
            source = raw_reports if column == "raw_input" else reports
            cells = []
            for k in ks:
                cells.append(cell([v for r in source if (v := few(r, column, view, k)) is not None]))
            cells.append(cell([v for r in source if (v := full(r, column, view)) is not None]))
            lines.append(f"| {name} | {column} | " + " | ".join(cells) + " |")
        gaps = [gap(reports, store_view, lambda r, c, v, k=k: few(r, c, v, k)) for k in ks]
        gaps.append(gap(reports, store_view, full))
        lines.append(f"| {name} | gap (pretrained - random init) | " + " | ".join(gaps) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
