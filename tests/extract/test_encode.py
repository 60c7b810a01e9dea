"""The shared record -> batch -> encode loop: order, skips, limits, no gradients, and the tracker training uses."""

from __future__ import annotations

import json

import pytest
import torch

from contrastive_mer.data.dataset import SkipReport, SkipTracker
from contrastive_mer.data.sample import Batch
from contrastive_mer.experiment import load_config
from contrastive_mer.extract.encode import encode_records, resolve_device
from contrastive_mer.model.module import PairwiseContrastiveModule
from tests.conftest import DEMO, TINY
from tests.data.test_dataset import FlakyCorpus

BAD = {"syn-s00-e1-c00", "syn-s01-e3-c01"}


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config(DEMO, TINY)
    torch.manual_seed(0)
    return cfg, PairwiseContrastiveModule(cfg)


def test_encode_records_yields_in_order_and_reports_skips(tiny, tmp_path) -> None:
    cfg, module = tiny
    corpus = FlakyCorpus(BAD)
    records = corpus.records()
    report = SkipReport(tmp_path / "skipped.jsonl", max_fraction=0.5)
    module.train()
    seen_grad = []

    def encode(batch: Batch) -> list[str]:
        seen_grad.append(torch.is_grad_enabled())
        assert not module.training  # the loop puts the module in eval mode
        return list(batch.ids)

    out = list(encode_records(module, cfg, corpus, records, encode=encode, batch_size=5, device="cpu", report=report,
                              num_workers=0))
    assert [i for ids in out for i in ids] == [r.id for r in records if r.id not in BAD]
    assert seen_grad and not any(seen_grad)
    skipped = [json.loads(line)["id"] for line in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert set(skipped) == BAD and corpus.loads == len(records)  # each clip read once (no memory cache)


def test_encode_records_raises_past_the_skip_limit(tiny) -> None:
    cfg, module = tiny
    corpus = FlakyCorpus(BAD)
    strict = SkipReport(None, max_fraction=0.01, min_seen=1)
    with pytest.raises(RuntimeError, match="skipped"):
        list(encode_records(module, cfg, corpus, corpus.records(), encode=lambda b: b, batch_size=4, device="cpu",
                            report=strict))


def test_skip_tracker_counts_decoded_and_skipped_clips() -> None:
    report = SkipReport(None, max_fraction=0.25, min_seen=4)
    track = SkipTracker(report, seen=2)
    batch = Batch(["a", "b"], {}, {}, {}, {}, {}, [{"id": "c", "path": "", "reason": "bad"}])
    assert track(batch) == 3 and track.seen == 5 and set(report.entries) == {"c"}
    empty = Batch([], {}, {}, {}, {}, {}, [{"id": "d", "path": "", "reason": "bad"}])
    with pytest.raises(RuntimeError, match="2 of 6 samples skipped"):
        track(empty)
    assert SkipTracker(None)(batch) == 3  # without a report it only counts


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
