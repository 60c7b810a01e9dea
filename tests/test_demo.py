"""`cmer demo` end to end on a tiny synthetic corpus: every stage runs and the report is complete."""

from __future__ import annotations

import json

from contrastive_mer.demo import run_demo
from tests.conftest import TINY


def test_demo_chain_writes_table_report_and_pictures(tmp_path):
    report = run_demo(tmp_path / "demo", fast=True, overrides=TINY)
    assert report["test_speakers"] == [3]
    table = report["table"]
    for view in ("audio", "video", "text", "fused/concat", "fused/mean"):
        for column in ("pretrained", "random_init"):
            for probe in ("linear", "knn"):
                assert 0.0 <= table[view][f"{column}/{probe}"] <= 1.0
    assert {"audio", "video", "text", "fused"} <= {v for v in table if "raw_input/linear" in table[v]}
    assert len(report["retrieval"]) == 6  # every ordered modality pair
    saved = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert saved["table"] == json.loads(json.dumps(table))
    for picture in report["pictures"]:
        assert (tmp_path / "demo" / picture.split("/")[-1]).stat().st_size > 1000
    assert (tmp_path / "demo" / "test-fused-mean.faiss").is_file()
