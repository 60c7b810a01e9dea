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
