"""Dataset wrapper: collation and masks, skip report, disk cache, group batch sampler."""

from __future__ import annotations

import pytest
import torch

from contrastive_mer.data.datamodule import build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset, PreparedSample, Skipped, SkipReport
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, SampleError
from contrastive_mer.data.datasets.synthetic import SyntheticCorpus
from contrastive_mer.data.samplers import GroupBatchSampler
from contrastive_mer.experiment import load_config
from tests.conftest import DEMO, TINY


class FlakyCorpus(CorpusAdapter):
    """Wraps the synthetic corpus; some clips fail to decode, and loads are counted."""

    name = "flaky"

    def __init__(self, bad: set[str]):
        super().__init__()
        self.inner = SyntheticCorpus(num_speakers=2, clips_per_speaker_emotion=2, frame_size=32, num_frames=4)
        self.bad = bad
        self.loads = 0

    def records(self):
        return self.inner.records()

    def load(self, record: ClipRecord, modalities):
        self.loads += 1
        if record.id in self.bad:
            raise SampleError(record.id, "truncated file", f"/data/{record.id}.wav")
        return self.inner.load(record, modalities)


@pytest.fixture
def tiny_cfg():
    return load_config(DEMO, TINY)


def test_collate_pads_and_masks(tiny_cfg):
    corpus = SyntheticCorpus(num_speakers=2, clips_per_speaker_emotion=2, frame_size=32, num_frames=4,
                             missing_fraction=0.5)
    pre = build_preprocessors(tiny_cfg)
    ds = MERDataset(corpus, corpus.records(), pre, cache="none")
    items = [ds[i] for i in range(len(ds))]
    batch = Collator(pre)(items)
    assert len(batch) == len(corpus.records())
    for m in pre:
        expected = [m in it.tensors for it in items]
        assert batch.present[m].tolist() == expected
        assert batch.inputs[m].shape[0] == len(batch)
        assert not batch.present[m].all()  # half the clips miss one modality: every modality is missing somewhere
    lengths = batch.lengths["audio"]
    for i, it in enumerate(items):
        if "audio" in it.tensors:
            n = it.tensors["audio"].shape[1]
            assert lengths[i] == n and torch.equal(batch.inputs["audio"][i, :, :n], it.tensors["audio"])
    assert batch.labels["emotion"].dtype == torch.int64


def test_undecodable_clips_are_skipped_and_reported(tiny_cfg, tmp_path):
    bad = {"syn-s00-e1-c00", "syn-s01-e3-c01"}
    corpus = FlakyCorpus(bad)
    pre = build_preprocessors(tiny_cfg)
    ds = MERDataset(corpus, corpus.records(), pre, cache="memory")
    batch = Collator(pre)([ds[i] for i in range(len(ds))])
    assert set(batch.ids).isdisjoint(bad)
    assert {s["id"] for s in batch.skipped} == bad
    assert all(s["reason"] == "truncated file" and s["path"].endswith(".wav") for s in batch.skipped)
    report = SkipReport(tmp_path / "skipped.jsonl", max_fraction=0.5, min_seen=1)
    report.add(batch.skipped)
    report.add(batch.skipped)  # the same clip again (next epoch) is recorded once
    assert len((tmp_path / "skipped.jsonl").read_text().splitlines()) == 2
    report.check(len(ds))
    strict = SkipReport(None, max_fraction=0.01, min_seen=1)
    strict.add(batch.skipped)
    with pytest.raises(RuntimeError, match="syn-s00-e1-c00"):
        strict.check(len(ds))


def test_preprocessing_failure_becomes_a_skip_not_a_half_sample(tiny_cfg):
    class NaNVideo(FlakyCorpus):
        def load(self, record, modalities):
            sample = super().load(record, modalities)
            if "video" in sample.inputs:
                sample.inputs["video"] = sample.inputs["video"][..., :2]  # wrong shape: 2 channels
            return sample

    corpus = NaNVideo(set())
    ds = MERDataset(corpus, corpus.records()[:3], build_preprocessors(tiny_cfg), cache="none")
    items = [ds[i] for i in range(3)]
    assert all(isinstance(it, Skipped) and "video" in it.reason for it in items if not isinstance(it, PreparedSample))
    assert any(isinstance(it, Skipped) for it in items)


def test_disk_cache_avoids_decoding_again_and_matches(tiny_cfg, tmp_path):
    corpus = FlakyCorpus(set())
    pre = build_preprocessors(tiny_cfg)
    first = MERDataset(corpus, corpus.records(), pre, cache="disk", cache_dir=tmp_path / "cache")
    a = [first[i] for i in range(len(first))]
    loads_after_first = corpus.loads
    second = MERDataset(corpus, corpus.records(), pre, cache="disk", cache_dir=tmp_path / "cache")
    b = [second[i] for i in range(len(second))]
    assert corpus.loads == loads_after_first  # nothing decoded the second time
    for x, y in zip(a, b):
        assert x.tensors.keys() == y.tensors.keys()
        for m in x.tensors:
            assert torch.equal(x.tensors[m], y.tensors[m])
    # other preprocessing settings -> other cache entries
    changed = load_config(DEMO, TINY + ["model.modalities.audio.preprocess.hop_length=160"])
    third = MERDataset(corpus, corpus.records()[:1], build_preprocessors(changed), cache="disk",
                       cache_dir=tmp_path / "cache")
    third[0]
    assert corpus.loads == loads_after_first + 1


def test_disk_plus_memory_cache_reads_each_file_once(tiny_cfg, tmp_path, monkeypatch):
    corpus = FlakyCorpus(set())
    pre = build_preprocessors(tiny_cfg)
    warm = MERDataset(corpus, corpus.records(), pre, cache="disk", cache_dir=tmp_path / "cache")
    expected = [warm[i] for i in range(len(warm))]
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    both = MERDataset(corpus, corpus.records(), pre, cache="disk+memory", cache_dir=tmp_path / "cache")
    for _ in range(3):  # three epochs
        got = [both[i] for i in range(len(both))]
    assert len(reads) == len(both) * len(pre)  # every cached file read once, in the first epoch only
    for x, y in zip(expected, got):
        assert all(torch.equal(x.tensors[m], y.tensors[m]) for m in x.tensors)
    with pytest.raises(ValueError, match="unknown cache"):
        MERDataset(corpus, corpus.records(), pre, cache="ram")


def test_group_batch_sampler_single_speaker_batches_and_ddp_shards():
    groups = [f"s{i % 6}" for i in range(120)]
    sampler = GroupBatchSampler(groups, batch_size=8, groups_per_batch=1, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) and all(len(b) == 8 for b in batches)
    assert all(len({groups[i] for i in b}) == 1 for b in batches)
    assert len({i for b in batches for i in b}) == sum(len(b) for b in batches)  # no repeats
    mixed = list(GroupBatchSampler(groups, batch_size=8, groups_per_batch=2, seed=3))
    assert all(len({groups[i] for i in b}) == 2 for b in mixed)
    ranks = [list(GroupBatchSampler(groups, 8, 1, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_collate_marks_missing_labels_instead_of_dropping_them():
    from contrastive_mer.data.dataset import _label_column

    assert _label_column([3, None, 1]).tolist() == [3, -1, 1]
    floats = _label_column([0.5, None])
    assert floats[0] == 0.5 and torch.isnan(floats[1])
    multi = _label_column([[1, 0], None])
    assert multi.shape == (2, 2) and torch.isnan(multi[1]).all()
    assert _label_column([None, None]) is None
