"""Issue 22 item 14: ``evaluation.txt`` gives the chance level and the rows of every fold, checked against
numpy counts of the same labels and folds."""

from __future__ import annotations

import numpy as np
import pytest

from contrastive_mer.data.splits import group_kfold
from contrastive_mer.evaluation.chance import chance_level, fold_rows, report_lines
from contrastive_mer.evaluation.protocol import kfold_views, run_probes


def test_chance_level_and_fold_rows_match_numpy() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 12 + [2] * 6)  # 'happy' is 30 of 48
    groups = np.array([f"s{i % 6}" for i in range(len(y))])
    X = rng.normal(size=(len(y), 5)).astype(np.float32) + y[:, None]
    results = run_probes(kfold_views("audio", X, y, groups, k=3), "multiclass", "emotion", probes=("linear",),
                         class_names=["happy", "sad", "calm"])
    row = results.rows[0]
    chance = chance_level(row, "multiclass", results.class_names)
    assert chance["accuracy"] == np.bincount(y).max() / len(y) == 30 / 48
    assert chance["balanced_accuracy"] == 1 / 3 and chance["majority_class"] == "happy"
    expected = [(len(tr), len(te)) for tr, te in group_kfold(groups, 3, 0)]
    assert fold_rows(row) == expected
    lines = report_lines(results, "audio")
    assert lines[0] == ("chance level (audio, a constant prediction): accuracy 62.5 (always 'happy', the most "
                        "frequent test class), UAR 33.3 (1/3 classes)")
    assert lines[1] == "rows per fold (audio, train / test): " + ", ".join(
        f"{i + 1}: {tr} / {te}" for i, (tr, te) in enumerate(expected))
    assert chance_level(row, "multilabel") == {"mean_weighted_accuracy": 0.5}
    assert chance_level(row, "regression") == {}


@pytest.mark.slow  # a whole cmer evaluate comparison (extraction, raw baselines, probes): minutes on 2 busy cores
def test_evaluation_txt_has_the_chance_level_and_rows_per_fold(tmp_path) -> None:
    from contrastive_mer.data.datamodule import build_corpus
    from contrastive_mer.experiment import load_config
    from contrastive_mer.workflows.comparison import evaluate_folds, random_init_like
    from tests.workflows.test_comparison_tasks import ROOT, _make_example

    made = _make_example()(tmp_path / "corpus", speakers=4, clips=2)
    cfg = load_config(ROOT / "experiments" / "manifest_example.yaml",
                      [f"data.root={made['jsonl']}", "data.options.labels=[emotion]", "seed=0"])
    evaluate_folds(cfg, random_init_like(cfg), tmp_path / "out", label="emotion", group="speaker", folds=2,
                   probes=("linear",), fusion_modes=("concat",), audio_baselines=False)
    text = (tmp_path / "out" / "evaluation.txt").read_text()
    records = build_corpus(cfg).records()
    codes = np.array([r.labels["emotion"] for r in records])
    share = 100 * np.bincount(codes).max() / len(codes)
    assert f"chance level (fused/concat, a constant prediction): accuracy {share:.1f}" in text
    assert f"UAR {100 / len(set(codes.tolist())):.1f}" in text
    groups = np.array([r.groups["speaker"] for r in records])
    sizes = ", ".join(f"{i + 1}: {len(tr)} / {len(te)}" for i, (tr, te) in enumerate(group_kfold(groups, 2, 0)))
    assert f"rows per fold (fused/concat, train / test): {sizes}" in text
