"""Baselines of ``cmer evaluate``: no test row in any statistic, per-speaker views, strongest-baseline report."""

from __future__ import annotations

import re

import numpy as np
import pytest

from contrastive_mer.data.normalization import zscore_by_group
from contrastive_mer.data.splits import group_kfold
from contrastive_mer.evaluation.baselines import RawFeatures
from contrastive_mer.evaluation.protocol import ProbeResults, ViewResult
from contrastive_mer.workflows.comparison import (
    raw_views_folds,
    raw_views_split,
    rows_by_view,
    strongest,
    summary_lines,
)


def _raw(seed: int = 0, speakers: int = 6, per: int = 10) -> RawFeatures:
    rng = np.random.default_rng(seed)
    n = speakers * per
    spk = np.repeat([f"s{i}" for i in range(speakers)], per)
    offset = np.repeat(rng.normal(0, 5, size=(speakers, 1)), per, axis=0)
    feats = {"audio": (rng.normal(size=(n, 4)) + offset).astype(np.float32),
             "au": (rng.normal(size=(n, 3)) * 2 - offset).astype(np.float32)}
    present = {"audio": np.ones(n, bool), "au": rng.random(n) > 0.1}
    return RawFeatures([f"c{i}" for i in range(n)], feats, present,
                       {"emotion": rng.integers(0, 3, n)}, {"speaker": spk})


def _by_name(views):
    out = {}
    for v in views:
        out.setdefault(v.name, []).append(v)
    return out


def test_fold_views_never_use_test_rows():
    raw = _raw()
    views = _by_name(raw_views_folds(raw, "emotion", "speaker", 3, seed=0, normalize_by="speaker"))
    assert set(views) == {"raw/audio", "raw/au", "raw/fused", "raw/audio@speaker", "raw/au@speaker",
                          "raw/fused@speaker"}
    base = views["raw/audio"][0]
    fold0_test = _fold_test_rows(raw, fold=0)  # blow up the test rows of fold 0
    changed = RawFeatures(raw.ids, {m: x.copy() for m, x in raw.features.items()}, raw.present, raw.labels,
                          raw.groups)
    for m in changed.features:
        changed.features[m][fold0_test] = changed.features[m][fold0_test] * 1000 + 77
    after = _by_name(raw_views_folds(changed, "emotion", "speaker", 3, seed=0, normalize_by="speaker"))
    for name in views:
        np.testing.assert_allclose(after[name][0].X_train, views[name][0].X_train, atol=1e-5,
                                   err_msg=f"{name}: training rows changed when only test rows did")
    assert not np.allclose(after["raw/audio"][0].X_test, base.X_test)


def _fold_test_rows(raw: RawFeatures, fold: int) -> np.ndarray:
    return group_kfold(np.asarray(raw.groups["speaker"]), 3, 0)[fold][1]


def test_per_speaker_views_match_numpy():
    raw = _raw(1)
    views = _by_name(raw_views_folds(raw, "emotion", "speaker", 3, seed=0, normalize_by="speaker"))
    tr, te = group_kfold(np.asarray(raw.groups["speaker"]), 3, 0)[0]
    ref = zscore_by_group(raw.features["audio"][tr], raw.groups["speaker"][tr])
    np.testing.assert_allclose(views["raw/audio@speaker"][0].X_train, ref, atol=1e-5)
    # each test speaker's statistics come from its own rows
    ref_te = zscore_by_group(raw.features["audio"][te], raw.groups["speaker"][te])
    np.testing.assert_allclose(views["raw/audio@speaker"][0].X_test, ref_te, atol=1e-5)


def test_split_views_use_training_statistics_only():
    train, test = _raw(2, speakers=4), _raw(3, speakers=2)
    views = _by_name(raw_views_split(train, test, "emotion", "speaker"))
    fused = views["raw/fused"][0]
    # standardised with training rows: training columns have mean 0 over present rows
    np.testing.assert_allclose(fused.X_train[:, :4].mean(0), 0.0, atol=1e-4)
    shifted = RawFeatures(test.ids, {m: x + 100 for m, x in test.features.items()}, test.present, test.labels,
                          test.groups)
    again = _by_name(raw_views_split(train, shifted, "emotion", "speaker"))
    np.testing.assert_allclose(again["raw/fused"][0].X_train, fused.X_train, atol=1e-5)


def _results(task: str, values: dict[str, float]) -> ProbeResults:
    key = {"multiclass": "accuracy", "regression": "mae", "multilabel": "mean_weighted_accuracy"}[task]
    rows = [ViewResult(v, "linear", {key: x, "other": 0.0}, {key: 0.01}, 10, 5) for v, x in values.items()]
    return ProbeResults(task, "y", rows)


@pytest.mark.parametrize("task", ["multiclass", "regression", "multilabel"])
def test_table_uses_the_tasks_primary_metric(task):
    table = rows_by_view(_results(task, {"raw/a": 0.4, "raw/b": 0.6}), "raw_input")
    assert table["a"]["raw_input/linear"] == 0.4 and table["a"]["raw_input/linear/std"] == 0.01
    best = strongest(table, "raw_input", task)
    assert best == (("a", 0.4) if task == "regression" else ("b", 0.6))


def test_summary_names_strongest_baseline_and_gap():
    table = {"fused@speaker": {"raw_input/linear": 0.80},
             "au": {"raw_input/linear": 0.60},
             "fused/concat@speaker": {"pretrained/linear": 0.85, "pretrained/linear/std": 0.02}}
    lines = summary_lines(table, "multiclass", "fused/concat@speaker")
    assert "fused@speaker 80.0" in lines[0]
    assert "85.0 ± 2.0" in lines[1] and "ahead of the strongest baseline by 5.0 points" in lines[1]
    table["fused/concat@speaker"]["pretrained/linear"] = 0.75
    assert "behind the strongest baseline by 5.0 points" in summary_lines(table, "multiclass",
                                                                        "fused/concat@speaker")[1]


class _OneSpeakerPose:
    """Registered on first use: au in every clip, pose only in speaker s0's clips (4 speakers x 12 clips)."""

    registered = False

    @classmethod
    def register(cls) -> None:
        if cls.registered:
            return
        from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
        from contrastive_mer.data.sample import Sample

        @register_adapter("pose_of_one_speaker")
        class PoseOfOneSpeaker(CorpusAdapter):
            name = "pose_of_one_speaker"
            modalities = ("au", "pose")

            def __init__(self) -> None:
                super().__init__()
                self.label_names = {"emotion": ["a", "b"]}

            def records(self) -> list[ClipRecord]:
                return [ClipRecord(f"c{i:02d}", {"au": i, **({"pose": i} if i % 4 == 0 else {})},
                                   {"emotion": (i // 4) % 2}, {"speaker": f"s{i % 4}"}) for i in range(48)]

            def load(self, record: ClipRecord, modalities: list[str]) -> Sample:
                rng = np.random.default_rng(int(record.id[1:]))
                z = (rng.normal(size=4) + 2 * record.labels["emotion"]).astype(np.float32)
                return Sample(record.id, {m: z for m in modalities if m in record.sources}, record.labels,
                              record.groups)

        cls.registered = True


def _pose_config(tmp_path):
    import textwrap

    from contrastive_mer.experiment import load_config

    _OneSpeakerPose.register()
    path = tmp_path / "pose.yaml"
    path.write_text(textwrap.dedent("""
        data: {dataset: pose_of_one_speaker, batch_size: 8}
        model:
          modalities:
            au: {encoder: mlp, encoder_args: {input_dim: 4, output_dim: 8}}
            pose: {encoder: mlp, encoder_args: {input_dim: 4, output_dim: 8}}
          head: {hidden_dim: 16, output_dim: 8}
        """))
    return load_config(path)


def test_a_view_without_rows_in_a_fold_is_found_before_extraction_and_reported(tmp_path, capsys):
    """Issue 22, item 4: pose only in speaker s0's clips, 2 folds by speaker. Before extracting, the fold check
    names pose (the fold and its clip counts); cmer evaluate's comparison keeps au and fused, reports
    "not probed: <column> pose: <reason>" in the text and JSON (was: aborted after extraction); ``views`` given
    as --modalities restricts the raw baselines to those modalities' inputs (was: every raw input)."""
    from contrastive_mer.model.module import PairwiseContrastiveModule
    from contrastive_mer.workflows.comparison import check_folds, evaluate_folds, raw_keys_for_views

    cfg = _pose_config(tmp_path)
    problems = check_folds(cfg, "speaker", 2, label="emotion")
    assert list(problems) == ["pose"] and problems["pose"].endswith("holding pose with a 'emotion' label")
    assert re.match(r"fold [01] has (0 training and 12|12 training and 0) test clips", problems["pose"])
    with pytest.raises(ValueError, match="no view could be probed: pose: fold"):
        check_folds(cfg, "speaker", 2, label="emotion", views=["pose"])
    assert raw_keys_for_views(cfg, ["au", "fused/concat"], False) == ["au"]
    assert raw_keys_for_views(cfg, ["fused/concat"], False) is None

    report = evaluate_folds(cfg, PairwiseContrastiveModule(cfg), tmp_path / "eval", label="emotion",
                            group="speaker", folds=2, probes=("linear",), audio_baselines=False)
    assert "warning: view 'pose' will not be probed: fold" in capsys.readouterr().err
    assert set(report["not_probed"]) == {"pretrained pose", "random_init pose", "raw_input pose"}
    assert all(r.startswith("fold ") for r in report["not_probed"].values())
    assert set(report["table"]) == {"au", "fused/concat", "fused/mean", "fused", "fused/concat+raw"}
    assert {"pretrained/linear", "random_init/linear", "raw_input/linear"} <= set(report["table"]["au"])
    assert "not probed: pretrained pose: fold" in report["text"]

    only_au = evaluate_folds(cfg, PairwiseContrastiveModule(cfg), tmp_path / "au", label="emotion",
                             group="speaker", folds=2, probes=("linear",), audio_baselines=False,
                             views=["au", "fused/concat"], columns=("pretrained", "raw_input"))
    assert [r["view"] for r in only_au["probes"]["raw_input"]["rows"]] == ["raw/au"]
