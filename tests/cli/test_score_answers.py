"""``cmer score-answers``: the table, the JSON report and the per-clip CSV; bad input is one line."""

from __future__ import annotations

import csv
import json

from contrastive_mer.cli.main import main


def test_score_answers_writes_report_and_per_clip(tmp_path, capsys) -> None:
    refs = tmp_path / "refs.jsonl"
    refs.write_text('{"id": "a", "emotion": "happy"}\n{"id": "b", "emotion": "sad"}\n')
    ans = tmp_path / "ans.jsonl"
    ans.write_text('{"id": "a", "answer": "glad, not sad"}\n{"id": "b", "answer": "sorrowful and tense"}\n')
    zero = tmp_path / "zero.jsonl"
    zero.write_text('{"id": "a", "answer": "sad"}\n{"id": "b", "answer": "sad"}\n')
    out, per_clip = tmp_path / "report.json", tmp_path / "clips.csv"
    assert main(["score-answers", "--answers", str(ans), "--references", str(refs), "--baseline",
                 f"zero={zero}", "--out", str(out), "--per-clip", str(per_clip)]) == 0
    report = json.loads(out.read_text())
    assert report["systems"]["answers"]["hit_rate"] == 1.0
    assert report["systems"]["zero"]["accuracy"] == 0.5
    assert report["systems"]["chance (uniform)"]["accuracy"] == 0.5
    rows = list(csv.DictReader(per_clip.open()))
    assert [(r["system"], r["id"], r["emotions"]) for r in rows][:2] == [("answers", "a", "happy"),
                                                                         ("answers", "b", "sad;fearful")]
    table = capsys.readouterr().out
    assert "hit_rate" in table and "chance (majority)" in table


def test_score_answers_bad_baseline_is_one_line(tmp_path, capsys) -> None:
    refs = tmp_path / "refs.jsonl"
    refs.write_text('{"id": "a", "emotion": "happy"}\n')
    assert main(["score-answers", "--answers", str(refs), "--references", str(refs), "--baseline", "x"]) == 2
    assert capsys.readouterr().err.strip() == "cmer score-answers: error: --baseline: expected NAME=FILE, got 'x'"
