"""``cmer score-answers --answers answers.jsonl --references refs.csv [--baseline NAME=FILE ...] --out report.json``

Scores free-text answers the way MLLM emotion benchmarks do, from the emotion words in each answer (see
:mod:`contrastive_mer.evaluation.answer_scores`): hit rate, accuracy and weighted F over a label set, sentiment
polarity, open-vocabulary set precision / recall / F; chance rows and baseline answers in the same table.
"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_out_file, comma_list
from contrastive_mer.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--answers", required=True, help="answers.jsonl (id, answer) or a MER2025-style CSV "
                                                        "(name, answer/openset)")
    parser.add_argument("--references", required=True, help="JSONL/CSV with id and emotion, sentiment and/or "
                                                             "emotions (an open set, words separated by ;)")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=FILE",
                        help="more answers scored in the same report (e.g. zero-tokens=answers_zero.jsonl)")
    parser.add_argument("--labels", help="the fixed label set, comma-separated (default: the reference emotions)")
    parser.add_argument("--lexicon", help="emotion lexicon JSON/YAML replacing the shipped one (same layout)")
    parser.add_argument("--synonyms", help="synonym / emotion-wheel map (JSON/YAML: group -> words or word -> "
                                           "group) for the open-set scores")
    add_out_file(parser, "the report (JSON: summary per system, label set)", required=False)
    parser.add_argument("--per-clip", metavar="FILE", help="also write every clip's extraction and scores (CSV)")


def _baselines(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UserError(f"--baseline: expected NAME=FILE, got {item!r}")
        if name.strip() in out or name.strip() == "answers":
            raise UserError(f"--baseline: the name {name.strip()!r} is used twice")
        out[name.strip()] = path.strip()
    return out


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from contrastive_mer.evaluation.answer_scores import format_table, score_files, write_per_clip

    report = score_files(args.answers, args.references, baselines=_baselines(args.baseline),
                         lexicon=args.lexicon, labels=comma_list(args.labels, option="--labels"),
                         synonyms=args.synonyms)
    print(format_table(report["systems"]))
    for name, n in report["unmatched"].items():
        if n:
            print(f"note: {n} answers of {name} have ids not in the references (ignored)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: report[k] for k in ("systems", "labels", "unmatched")}, indent=2) + "\n",
                       encoding="utf-8")
        print(f"report written to {out}")
    if args.per_clip:
        print(f"per-clip rows written to {write_per_clip(args.per_clip, report['per_clip'])}")
    return 0
