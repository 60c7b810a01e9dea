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


def test_demo_retrieval_reads_through_the_view_rule(tmp_path):
    """The demo's retrieval and neighbours read the store's vectors through ``FeatureStore.view`` (before: its
    own projections/present reads, which kept a present row holding NaN)."""
    import numpy as np

    from contrastive_mer.evaluation.retrieval import cross_modal_retrieval
    from contrastive_mer.store.hdf5 import FeatureStore
    from contrastive_mer.workflows.demo import _retrieval
    from tests.store.test_hdf5 import make_rows, write_store

    rows = make_rows(12)
    rows["fused"]["mean"] = rows["fused"]["concat"][:, :4].copy()
    rows["projections"]["audio"][5, 0] = np.nan  # present, but not a usable vector
    path = write_store(tmp_path / "t.h5", rows, fused_dims={"concat": 8, "mean": 4})
    (tmp_path / "run").mkdir()
    metrics, neighbours = _retrieval(path, tmp_path / "run")
    with FeatureStore(path) as store:
        views = {m: store.view(f"projections/{m}") for m in store.modalities}
        expected = cross_modal_retrieval({m: v.vectors for m, v in views.items()},
                                         {m: v.usable for m, v in views.items()})
        assert not views["audio"].usable[5]
        assert [n["query"] for n in neighbours] == [str(store.ids[r]) for r in store.view("fused/mean").rows[:3]]
    assert json.dumps(metrics, sort_keys=True) == json.dumps(expected, sort_keys=True)
