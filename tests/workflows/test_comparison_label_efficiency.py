"""``cmer evaluate`` with few labels and a missing modality: the same drawn clips for the pretrained, random-init
and raw-input columns, tables per K in evaluation.json/.txt, label_efficiency.png with the report's numbers, the
missing modality tested on the clips that lack it, the transductive declaration at the top."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contrastive_mer.evaluation import label_efficiency as le
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import random_init_like
from contrastive_mer.workflows.comparison import TRANSDUCTIVE_LINE, evaluate_folds
from tests.conftest import ROOT
from tests.workflows.test_comparison_tasks import _make_example


@pytest.fixture
def lacking_cfg(tmp_path):
    made = _make_example()(tmp_path / "corpus", speakers=4, clips=2)
    rows = [json.loads(line) for line in made["jsonl"].read_text().splitlines()]
    lacking = set()
    with open(made["jsonl"], "w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            if i % 4 == 1:  # a quarter of the clips have no action units
                row.pop("feat:au")
                lacking.add(row["id"])
            fh.write(json.dumps(row) + "\n")
    cfg = load_config(ROOT / "experiments" / "manifest_example.yaml",
                      [f"data.root={made['jsonl']}", "data.options.labels=[emotion]", "seed=0"])
    return cfg, lacking


def test_evaluate_label_efficiency_missing_and_transductive(lacking_cfg, tmp_path, monkeypatch):
    cfg, lacking = lacking_cfg
    drawn: list[dict] = []
    real = le.run_probes

    def spy(views, *args, **kwargs):
        drawn.append({(v.name.removeprefix("raw/"), v.fold): sorted(v.ids_train.tolist()) for v in views})
        return real(views, *args, **kwargs)

    monkeypatch.setattr(le, "run_probes", spy)
    out = tmp_path / "eval"
    report = evaluate_folds(cfg, random_init_like(cfg), out, label="emotion", group="speaker", folds=2,
                            probes=("linear",), fusion_modes=("concat",), audio_baselines=False,
                            labels_per_class=[1, 2], draws=2, missing="au", transductive=True,
                            plot_views=["audio"])
    # pretrained, random-init, raw: 2 K x 2 draws each; the same clips per (view, fold) in every column
    assert len(drawn) == 12
    pre, rnd, raw = drawn[:4], drawn[4:8], drawn[8:]
    for a, b, c in zip(pre, rnd, raw):
        assert a == b
        assert a[("audio", 0)] == c[("audio", 0)] and a[("fused/concat", 0)] == c[("fused", 0)]
    assert pre[0] != pre[1]  # two draws, other clips
    # missing: only the clips that lack au are tested, in every column
    assert report["missing"]["mode"] == "lacking" and report["missing"]["clips"] == len(lacking)
    for column in ("pretrained", "random_init", "raw_input"):
        rows = report["probes"][column]["rows"]
        assert rows and all(r["n_test"] == len(lacking) for r in rows), column
        assert not any(r["view"].split("/")[-1] == "au" for r in rows)
    text = (out / "evaluation.txt").read_text()
    assert text.splitlines()[0] == TRANSDUCTIVE_LINE and "lack au" in text.splitlines()[1]
    assert "K = 1" in text and "K = 2" in text
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["transductive"] is True and set(saved["label_efficiency"]) == {"pretrained", "random_init",
                                                                                "raw_input"}
    png = out / "label_efficiency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    plotted = saved["label_efficiency_plot"]
    assert set(plotted) == {"fused/concat", "audio"} and set(plotted["fused/concat"]) == {"pretrained",
                                                                                           "random_init", "raw_input"}
    for column, res in saved["label_efficiency"].items():
        view = "fused/concat" if column != "raw_input" else "raw/fused"
        want = [next(r for r in res["rows"] if r["view"] == view and r["k"] == k and r["probe"] == "linear")
                for k in (1, 2)]
        np.testing.assert_allclose(plotted["fused/concat"][column]["mean"], [r["mean"] for r in want])
        np.testing.assert_allclose(plotted["fused/concat"][column]["std"], [r["std"] for r in want])
        assert plotted["fused/concat"][column]["ks"] == [1, 2]


def test_few_label_probes_take_their_own_weight_decay(lacking_cfg, tmp_path, monkeypatch):
    """``few_linear`` (``cmer evaluate --few-weight-decay``) reaches every K-per-class fit of every column and
    nothing else: the all-labels probes keep the grid."""
    from contrastive_mer.evaluation.linear import LinearProbeConfig

    cfg, _ = lacking_cfg
    seen: list[tuple[float, ...]] = []
    real = le.run_probes

    def spy(views, *args, **kwargs):
        seen.append(tuple(kwargs["linear"].weight_decays))
        return real(views, *args, **kwargs)

    monkeypatch.setattr(le, "run_probes", spy)
    grid = LinearProbeConfig(seed=0, weight_decays=(1e-3, 1e-1, 10.0))
    report = evaluate_folds(cfg, random_init_like(cfg), tmp_path / "eval", label="emotion", group="speaker",
                            folds=2, probes=("linear",), fusion_modes=("concat",), audio_baselines=False,
                            labels_per_class=[1], draws=1, linear=grid,
                            few_linear=LinearProbeConfig(seed=0, weight_decays=(0.5,)))
    assert seen == [(0.5,)] * 3  # pretrained, random init, raw input
    assert report["label_efficiency_weight_decays"] == [0.5]
    assert "weight decay fixed at 0.5" in report["text"]
