"""The tiny-MLP corpus and the per-phase timers shared by the extraction and store benchmarks
(``bench_extraction.py``, ``store_cost.py``)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from common import ROOT

from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, register_adapter
from contrastive_mer.data.sample import Batch, Sample
from contrastive_mer.experiment import config_from_dict, load_config
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.store.hdf5 import FeatureStoreWriter

SPEAKERS = tuple(f"spk{i:02d}" for i in range(20))


@register_adapter("bench_vectors")
class BenchVectors(CorpusAdapter):
    """Random vectors seeded by the clip index: ``au`` (35,) and ``physio`` (64,); records are cheap."""

    name = "bench_vectors"
    modalities = ("au", "physio")

    def __init__(self, num_clips: int = 1000, seed: int = 0):
        super().__init__()
        self.label_names = {"emotion": [f"e{i}" for i in range(8)]}
        self.num_clips, self.seed = num_clips, seed

    def records(self) -> list[ClipRecord]:
        return [ClipRecord(f"clip{k:07d}", {"au": k, "physio": k}, {"emotion": k % 8}, {"speaker": SPEAKERS[k % 20]})
                for k in range(self.num_clips)]

    def load(self, record: ClipRecord, modalities) -> Sample:
        rng = np.random.default_rng([self.seed, record.sources["au"]])
        values = {"au": rng.random(35, dtype=np.float32), "physio": rng.standard_normal(64, dtype=np.float32)}
        return Sample(record.id, {m: values[m] for m in modalities}, dict(record.labels), dict(record.groups))


def vector_config(clips: int):
    return config_from_dict({
        "name": "bench_vectors", "data": {"dataset": "bench_vectors", "options": {"num_clips": clips},
                                          "cache": "none"},
        "model": {"modalities": {
            "au": {"encoder": "mlp", "encoder_args": {"input_dim": 35, "hidden_dims": [64], "output_dim": 64}},
            "physio": {"encoder": "mlp", "encoder_args": {"input_dim": 64, "hidden_dims": [64], "output_dim": 64}}},
            "head": {"hidden_dim": 64, "output_dim": 32}}})


def demo_config():
    """The demo experiment over all 12 speakers of its synthetic corpus (576 clips)."""
    return load_config(ROOT / "experiments" / "demo.yaml", ["data.options.speakers=null"])


# ---------------------------------------------------------------------------------------------- (i) overhead
def materialise(cfg, clips: int, batch: int) -> tuple[CorpusAdapter, list[ClipRecord], list[Batch]]:
    """The data pipeline's output for the first ``clips`` records, collated into batches once."""
    adapter = build_corpus(cfg)
    records = adapter.records()[:clips]
    clips = len(records)
    preps = build_preprocessors(cfg)
    dataset = MERDataset(adapter, records, preps, cache="none")
    collate = Collator(preps)
    batches = [collate([dataset[i] for i in range(s, min(s + batch, clips))]) for s in range(0, clips, batch)]
    return adapter, records, batches


class Breakdown:
    """Seconds spent in the forward pass and in the writer's methods during one instrumented extraction
    (exclusive: a flush inside ``append`` or ``finish`` counts as row log only)."""

    PARTS = ("forward", "open", "rows", "row log", "final merge")

    def __init__(self, module: PairwiseContrastiveModule):
        self.t = dict.fromkeys(self.PARTS, 0.0)
        self.cpu = dict.fromkeys(self.PARTS, 0.0)  # the same in CPU time of this process (less hit by load)
        self.module = module

    def _wrap(self, key: str, fn: Callable) -> Callable:
        def timed(*a: Any, **kw: Any) -> Any:
            flushed, start = self.t["row log"], time.perf_counter()
            flushed_cpu, start_cpu = self.cpu["row log"], time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                nested = self.t["row log"] - flushed if key != "row log" else 0.0
                nested_cpu = self.cpu["row log"] - flushed_cpu if key != "row log" else 0.0
                self.t[key] += time.perf_counter() - start - nested
                self.cpu[key] += time.process_time() - start_cpu - nested_cpu
        return timed

    def run(self, extraction: Callable[[], Any]) -> dict[str, float]:
        methods = {"__init__": "open", "append": "rows", "flush": "row log", "finish": "final merge"}
        originals = {k: getattr(FeatureStoreWriter, k) for k in methods}
        self.module.forward = self._wrap("forward", self.module.forward)
        for k, fn in originals.items():
            setattr(FeatureStoreWriter, k, self._wrap(methods[k], fn))
        try:
            start = time.perf_counter()
            extraction()
            total = time.perf_counter() - start
        finally:
            del self.module.forward
            for k, fn in originals.items():
                setattr(FeatureStoreWriter, k, fn)
        return {"total": total, **self.t, "rest": total - sum(self.t.values()),
                **{f"cpu {k}": v for k, v in self.cpu.items()}}


