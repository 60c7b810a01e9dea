"""`cmer demo` end to end on a tiny synthetic corpus: every stage runs and the report is complete."""

from __future__ import annotations

import json

import pytest

from contrastive_mer.workflows.demo import run_demo
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


def test_demo_speaker_roles_default_explicit_and_overlap():
    from contrastive_mer.experiment import load_config
    from contrastive_mer.workflows.demo import DEMO_CONFIG, demo_speakers

    base = ["data.options.num_speakers=6", "data.options.speakers=[0,1,2,3]", "demo.labelled_speakers=null"]
    roles = demo_speakers(load_config(DEMO_CONFIG, base))
    assert (roles.pretrain, roles.labelled, roles.test) == ([0, 1, 2, 3], [0, 1, 2, 3], [4, 5])
    roles = demo_speakers(load_config(DEMO_CONFIG, base + ["demo.labelled_speakers=[0,1]",
                                                           "demo.test_speakers=[5]"]))
    assert (roles.labelled, roles.test) == ([0, 1], [5])
    with pytest.raises(ValueError, match=r"demo.test_speakers: speaker\(s\) \[3\]"):
        demo_speakers(load_config(DEMO_CONFIG, base + ["demo.test_speakers=[3,4]"]))
    with pytest.raises(ValueError, match=r"demo.labelled_speakers: speaker\(s\) \[9\] not in the corpus"):
        demo_speakers(load_config(DEMO_CONFIG, base + ["demo.labelled_speakers=[9]"]))
