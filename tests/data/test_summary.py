"""Modality-pair coverage before training (issue 22, item 1): a corpus where no clip holds both modalities of any
loss pair is refused at start with the count per pair (was: loss 0.000 and exit 0); a thin pair is a warning."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
from contrastive_mer.data.sample import Sample
from contrastive_mer.data.summary import data_summary, refuse_untrainable_pairs
from contrastive_mer.errors import UserError
from tests.conftest import cli_error


@register_adapter("one_modality_per_clip")
class OneModalityPerClip(CorpusAdapter):
    """24 clips of two vector modalities, each clip holding only one of them (``both`` clips hold both)."""

    name = "one_modality_per_clip"
    modalities = ("au", "pose")

    def __init__(self, both: int = 0):
        super().__init__()
        self.both = both

    def records(self) -> list[ClipRecord]:
        def sources(i: int) -> dict[str, int]:
            return {"au": i, "pose": i} if i < self.both else {("au", "pose")[i % 2]: i}

        return [ClipRecord(f"c{i:02d}", sources(i), {}, {"speaker": f"s{i % 4}"}) for i in range(24)]

    def load(self, record: ClipRecord, modalities: list[str]) -> Sample:
        z = np.random.default_rng(int(record.id[1:])).normal(size=4).astype(np.float32)
        return Sample(record.id, {m: z for m in modalities if m in record.sources}, record.labels, record.groups)


def test_pair_counts_refusal_and_thin_pair_warning() -> None:
    """Counts of clips holding both modalities per pair and split, checked against a direct count; the refusal
    lists every pair; a pair below a batch warns."""
    records = OneModalityPerClip(both=3).records()
    sources = {"au": "au", "pose": "pose"}
    summary = data_summary({"train": records[:16], "val": records[16:]}, sources, "speaker", 8,
                           pairs=[("au", "pose")])
    assert summary["pairs"] == {"au-pose": {"train": 3, "val": 0}}
    assert [w for w in summary["warnings"] if w.startswith("pair")] == [
        "pair 'au-pose' is held by 3 training clip(s), fewer than a batch (8): it gets few in-batch negatives"]
    refuse_untrainable_pairs(summary)  # 3 >= 2: trains
    one = data_summary({"train": OneModalityPerClip(both=1).records()}, sources, "speaker", 8, pairs=[("au", "pose")])
    with pytest.raises(UserError, match=r"^no modality pair of the loss can train: training clips holding both "
                                        r"modalities of each pair: au-pose: 1 \(a pair needs at least 2\)"):
        refuse_untrainable_pairs(one)


def test_pretraining_a_corpus_without_any_pair_is_refused_at_start(tmp_path: Path) -> None:
    """``cmer pretrain`` on clips that each hold one modality: exit 2, one line with the count per pair, no
    checkpoint (was: trained at loss 0.000 and exited 0)."""
    config = tmp_path / "toy.yaml"
    config.write_text(textwrap.dedent("""
        data: {dataset: one_modality_per_clip, batch_size: 6, val_fraction: 0.25}
        model:
          modalities:
            au: {encoder: mlp, encoder_args: {input_dim: 4, output_dim: 8}}
            pose: {encoder: mlp, encoder_args: {input_dim: 4, output_dim: 8}}
          head: {hidden_dim: 16, output_dim: 8}
        trainer: {max_epochs: 1, enable_progress_bar: false}
        """))
    run = tmp_path / "run"
    line = cli_error("pretrain", "--config", str(config), "--output", str(run))
    assert line.startswith("cmer pretrain: error: no modality pair of the loss can train: training clips holding "
                           "both modalities of each pair: au-pose: 0 (a pair needs at least 2)"), line
    assert not (run / "checkpoints").exists()
