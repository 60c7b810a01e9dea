"""label_efficiency.png: a valid PNG whose plotted numbers are the report's (mean and sd over draws per K)."""

from __future__ import annotations

import numpy as np

from contrastive_mer.evaluation.label_efficiency import LabelEfficiencyResults, LabelEfficiencyRow
from contrastive_mer.evaluation.plots import plot_label_efficiency


def _results(views, offset):
    rng = np.random.default_rng(int(offset * 10))
    rows = [LabelEfficiencyRow(v, "linear", k, (offset + 0.1 * np.log(k) + 0.02 * rng.random(3)).tolist(), [k] * 3)
            for k in (1, 5, 20) for v in views]
    return LabelEfficiencyResults("multiclass", "emotion", "accuracy", [1, 5, 20], 3, 0, rows)


def test_png_and_plotted_numbers(tmp_path):
    columns = {"pretrained": _results(["fused/concat", "egemaps"], 0.5),
               "random_init": _results(["fused/concat", "egemaps"], 0.4),
               "raw_input": _results(["raw/fused", "raw/egemaps"], 0.3)}
    path = tmp_path / "label_efficiency.png"
    plotted = plot_label_efficiency(columns, ["fused/concat", "egemaps", "absent"], path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert list(plotted) == ["fused/concat", "egemaps"]
    for view in plotted:
        for column, res in columns.items():
            name = view if column != "raw_input" else {"fused/concat": "raw/fused", "egemaps": "raw/egemaps"}[view]
            rows = [res.row(name, "linear", k) for k in (1, 5, 20)]
            got = plotted[view][column]
            assert got["ks"] == [1, 5, 20]
            np.testing.assert_allclose(got["mean"], [np.mean(r.scores) for r in rows])
            np.testing.assert_allclose(got["std"], [np.std(r.scores) for r in rows])
