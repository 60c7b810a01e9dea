"""``cmer evaluate``'s comparison on a regression label and a multi-label label reports each task's metric."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from contrastive_mer.experiment import load_config
from contrastive_mer.workflows.comparison import evaluate_folds, random_init_like
from tests.conftest import ROOT


def _make_example():
    spec = importlib.util.spec_from_file_location("make_manifest_example",
                                                  ROOT / "experiments" / "make_manifest_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_example


@pytest.fixture
def manifest_cfg(tmp_path):
    made = _make_example()(tmp_path / "corpus", speakers=4, clips=2)
    rows = [json.loads(line) for line in made["jsonl"].read_text().splitlines()]
    rng = np.random.default_rng(0)
    with open(made["jsonl"], "w", encoding="utf-8") as fh:
        for row in rows:  # a 3-label multi-label target: a JSONL list
            row["tags"] = [float(x) for x in (rng.random(3) < 0.5)]
            fh.write(json.dumps(row) + "\n")
    return load_config(ROOT / "experiments" / "manifest_example.yaml",
                       [f"data.root={made['jsonl']}", "data.options.labels=[emotion,valence,tags]", "seed=0"])


@pytest.mark.parametrize("label, metric", [("valence", "mae"), ("tags", "mean_weighted_accuracy")])
def test_evaluate_reports_the_tasks_metric(manifest_cfg, tmp_path, label, metric):
    report = evaluate_folds(manifest_cfg, random_init_like(manifest_cfg), tmp_path / label, label=label,
                            group="speaker", folds=2, probes=("linear",), fusion_modes=("concat",),
                            audio_baselines=False, normalize_by="speaker")
    assert report["metric"] == metric
    assert report["task"] == ("regression" if label == "valence" else "multilabel")
    cells = report["table"]["fused/concat"]
    assert np.isfinite(cells["pretrained/linear"]) and np.isfinite(cells["random_init/linear"])
    assert report["strongest_baseline"] is not None
    assert metric in (tmp_path / label / "evaluation.txt").read_text()
    if label == "valence":  # the tones' pitch follows the emotion, so valence is predictable: MAE well under 1
        assert report["strongest_baseline"][1] < 0.6
