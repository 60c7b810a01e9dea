"""The bring-your-own-corpus example (issue 12 item 6): the generator's manifest and
experiments/manifest_example.yaml."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np

from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.experiment import load_config
from tests.conftest import ROOT


def generator():
    spec = importlib.util.spec_from_file_location("make_manifest_example",
                                                  ROOT / "experiments" / "make_manifest_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_manifest_reads_through_the_example_config(tmp_path: Path) -> None:
    made = generator().make_example(tmp_path / "ex", speakers=3, clips=1)
    assert made["rows"] == 12
    with open(made["csv"], encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    jsonl = [json.loads(line) for line in made["jsonl"].read_text().splitlines()]
    assert [r["id"] for r in table] == [r["id"] for r in jsonl]
    names = ["neutral", "happy", "sad", "angry"]
    for manifest in (made["csv"], made["jsonl"]):
        cfg = load_config(ROOT / "experiments" / "manifest_example.yaml", [f"data.root={manifest}"])
        data = MERDataModule(cfg)
        data.setup()
        assert [r.id for r in data.records] == [r["id"] for r in table]
        for rec, row in zip(data.records, table):
            assert rec.labels["emotion"] == names.index(row["emotion"])
            assert rec.labels["valence"] == float(row["valence"])
            assert rec.groups["speaker"] == row["speaker"]
            assert set(rec.sources) == {"audio", "au"}
        summary = data.summary()
        assert summary["clips"] == {"train": 8, "val": 4} and summary["warnings"] == []
        batch = next(iter(data.val_dataloader()))
        row = table[[r["id"] for r in table].index(batch.ids[0])]
        np.testing.assert_allclose(batch.inputs["au"][0].numpy(), np.load(tmp_path / "ex" / row["feat:au"]),
                                   rtol=1e-6)


def test_fixed_class_names_code_a_subset_like_the_full_manifest(tmp_path: Path) -> None:
    """With class_names in the config, a one-emotion subset still codes 'sad' as 2."""
    made = generator().make_example(tmp_path / "ex", speakers=2, clips=1)
    lines = made["csv"].read_text().splitlines()
    subset = tmp_path / "ex" / "sad.csv"
    subset.write_text("\n".join([lines[0], *[ln for ln in lines[1:] if ",sad," in ln]]) + "\n")
    cfg = load_config(ROOT / "experiments" / "manifest_example.yaml",
                      [f"data.root={subset}", "data.val_fraction=0"])
    data = MERDataModule(cfg)
    data.setup()
    assert len(data.records) == 2 and {r.labels["emotion"] for r in data.records} == {2}


def test_clips_without_a_chosen_modality_are_left_out_at_scan_not_counted_as_failures(tmp_path) -> None:
    """Issue 22, item 5: 8 of 32 clips hold only a ``feat:gaze`` file and ``data.options.modalities=[au, pose]``:
    the scan leaves them out, each listed once as "no chosen modality" (naming what the clip has), and pretraining
    runs under the default 5% skip limit with no decoding skip (was: 8 decode failures, TooManySkippedError)."""
    from contrastive_mer.data.datamodule import build_corpus
    from contrastive_mer.pretrain.loop import pretrain
    from tests.cli.test_faults import feature_corpus, feature_overrides

    manifest = feature_corpus(tmp_path / "corpus", 24)
    lines = manifest.read_text().splitlines()
    rows = [lines[0] + ",feat:gaze"] + [ln + "," for ln in lines[1:]]
    for i in range(8):
        np.save(tmp_path / "corpus" / f"gaze{i}.npy", np.zeros(3, np.float32))
        rows.append(f"g{i},s{i % 4},,,gaze{i}.npy")
    manifest.write_text("\n".join(rows) + "\n")
    overrides = feature_overrides(manifest) + ["data.options.modalities=[au,pose]"]
    cfg = load_config(None, overrides)
    adapter = build_corpus(cfg)
    assert [r.id for r in adapter.records()] == [f"c{i:02d}" for i in range(24)]
    assert [(s.id, s.line, s.reason) for s in adapter.skipped] == [
        (f"g{i}", 26 + i, "no chosen modality: the clip has gaze; data.options.modalities: au, pose")
        for i in range(8)]
    run = tmp_path / "run"
    pretrain(cfg, run)  # under data.max_skip_fraction=0.05 (the default)
    report = [json.loads(line) for line in (run / "skipped.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in report) == [f"g{i}" for i in range(8)]
    assert {r["stage"] for r in report} == {"scan"}
