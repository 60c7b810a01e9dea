"""Rows the manifest scan leaves out (unknown label, duplicate id, unparsable line) reach the run's
``skipped.jsonl`` and the printed summary; the file is rewritten per run, each (id, reason) once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastive_mer.data.dataset import SkipReport
from contrastive_mer.data.datasets.base import SkipEntry
from contrastive_mer.experiment import load_config
from tests.cli.test_faults import feature_corpus, feature_overrides


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_report_is_rewritten_per_run_and_keeps_earlier_records_once(tmp_path: Path) -> None:
    path = tmp_path / "skipped.jsonl"
    a = {"id": "a", "path": "a.wav", "reason": "truncated"}
    path.write_text("\n".join(json.dumps(r) for r in [a, a, {"id": "old", "path": "o", "reason": "x"}]) + "\n")
    fresh = SkipReport(path)
    fresh.start()
    assert not path.exists()  # a new run: nothing of the earlier one is left
    fresh.add([a])
    fresh.add([a])
    assert read(path) == [a]
    resumed = SkipReport(path, keep=True)  # a resumed run: the earlier records, once
    resumed.add_scan([SkipEntry("m.csv", "duplicate id 'b'", 4, "b"), SkipEntry("m.csv", "unparseable", 7)])
    resumed.start()
    resumed.add([a, {"id": "c", "path": "c.wav", "reason": "empty"}])
    rows = read(path)
    assert [r["id"] for r in rows] == ["a", "b", "", "c"]
    assert rows[1] == {"id": "b", "path": "m.csv", "line": 4, "reason": "duplicate id 'b'", "stage": "scan"}
    assert resumed.total == 4 and len(resumed.entries) == 2  # the skip fraction counts decoding skips only
    assert resumed.summary() == f"4 sample(s) skipped (2 when listing the corpus, 2 while decoding), listed in {path}"
    rank1 = SkipReport(path)
    rank1.start(write=False)  # a DDP rank other than the first leaves the file alone
    assert len(read(path)) == 4


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """24 feature clips (one empty .npy: skipped while decoding) with an emotion column, one of them with a class
    outside class_names (kept without the label: labels never remove a clip), plus two rows the scan leaves out:
    a repeated id, a line with too many cells."""
    manifest = feature_corpus(tmp_path / "corpus", 24, {3: "empty"})
    lines = manifest.read_text().splitlines()
    rows = [lines[0] + ",emotion"] + [f"{ln},{('happy', 'sad')[i % 2]}" for i, ln in enumerate(lines[1:])]
    rows[5] = rows[5].rsplit(",", 1)[0] + ",bored"  # c04: not in class_names
    rows += [lines[1] + ",sad", "x9,s1,a.npy,b.npy,happy,extra"]
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def overrides(manifest: Path) -> list[str]:
    return feature_overrides(manifest) + ["data.max_skip_fraction=0.2", "data.options.labels=[emotion]",
                                          "data.options.class_names={emotion: [happy, sad]}"]


def test_pretraining_and_extraction_list_scan_skips_once(corpus: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint
    from contrastive_mer.pretrain.loop import pretrain

    run = tmp_path / "run"
    result = pretrain(load_config(None, overrides(corpus)), run)
    rows = read(run / "skipped.jsonl")
    scan = [r for r in rows if r.get("stage") == "scan"]
    assert sorted((r["id"], r["line"]) for r in scan) == [("", 27), ("c00", 26)]
    assert [r["id"] for r in rows if r.get("stage") != "scan"] == ["c03"]
    captured = capsys.readouterr()
    assert "3 sample(s) skipped (2 when listing the corpus, 1 while decoding)" in captured.out
    assert "1 clip(s) have a value not in class_names ['happy', 'sad']: 'bored' (1: c04)" in captured.err
    pretrain(load_config(None, overrides(corpus) + ["trainer.max_epochs=2"]), run, resume=True)
    assert read(run / "skipped.jsonl") == rows  # resumed: the same records, each once
    pretrain(load_config(None, overrides(corpus)), run, overwrite=True)
    assert read(run / "skipped.jsonl") == rows

    out = tmp_path / "f.h5"
    report = out.with_name(out.name + ".skipped.jsonl")
    report.write_text('{"id": "stale", "path": "", "reason": "an earlier run"}\n')
    for _ in range(2):  # a rerun over the store rewrites the report
        extract_from_checkpoint(result.checkpoint, out, options=ExtractOptions(progress=False, overwrite=True))
        listed = read(report)
        assert sorted(r["id"] for r in listed) == ["", "c00", "c03"]
    assert "3 sample(s) skipped (2 when listing the corpus, 1 while decoding)" in capsys.readouterr().out
