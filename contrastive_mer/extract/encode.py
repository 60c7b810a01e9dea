"""The one loop from dataset records to encoded batches, with skip reporting.

:func:`encode_records` decodes records (a DataLoader over :class:`MERDataset`), records undecodable clips in a
:class:`SkipReport` (which raises past ``data.max_skip_fraction``), and runs a caller-given ``encode`` on each
non-empty batch without gradients. Extraction (store rows) and the MLLM front end (token sources) differ only
in that ``encode``; training counts skips with the same
:class:`~contrastive_mer.data.dataset.SkipTracker`.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence, TypeVar

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from contrastive_mer.data.datamodule import build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset, SkipReport, SkipTracker, uses_disk
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter
from contrastive_mer.data.sample import Batch

T = TypeVar("T")

__all__ = ["encode_records", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto``: CUDA when available (``cuda:<LOCAL_RANK>`` under torchrun), else CPU; anything else as given."""
    if str(device) == "auto":
        from contrastive_mer.extract.shards import local_rank_device

        return torch.device(local_rank_device() or "cuda") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def encode_records(module: torch.nn.Module, cfg: DictConfig, adapter: CorpusAdapter, records: Sequence[ClipRecord],
                   *, encode: Callable[[Batch], T], batch_size: int = 32, device: str | torch.device = "auto",
                   num_workers: int | None = None, report: SkipReport | None = None, seen: int = 0,
                   progress: str | None = None) -> Iterator[T]:
    """Yield ``encode(batch)`` for each non-empty batch of ``records``, in record order.

    The batch is on ``device`` (``auto``: see :func:`resolve_device`), ``module`` is moved there and put in
    eval mode; ``encode`` runs without gradients. Preprocessing follows ``cfg`` (its disk cache is used when
    configured; the memory cache is not, every clip is read once). ``num_workers`` defaults to
    ``data.num_workers``. ``seen`` clips already done count towards the skip fraction and the progress bar
    (shown with ``progress`` as its title).
    """
    target = resolve_device(device)
    module.to(target).eval()
    preprocessors = build_preprocessors(cfg)
    dataset = MERDataset(adapter, records, preprocessors, cache="disk" if uses_disk(cfg.data.cache) else "none",
                         cache_dir=cfg.data.cache_dir, normalize=cfg.data.normalize,
                         normalize_min_clips=cfg.data.normalize_min_clips, normalize_records=adapter.records())
    workers = cfg.data.num_workers if num_workers is None else num_workers
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=Collator(preprocessors), pin_memory=target.type == "cuda")
    tracker = SkipTracker(report, seen)
    bar = tqdm(total=seen + len(records), initial=seen, desc=progress, disable=progress is None, unit="clip")
    try:
        for batch in loader:
            bar.update(tracker(batch))
            if len(batch) == 0:
                continue
            with torch.no_grad():
                result = encode(batch.to(target, non_blocking=True))
            yield result
        if report is not None:  # every clip seen: a run that skipped them all stops here, before any finish
            report.check(max(tracker.seen, len(report.entries)), final=True)
    finally:
        bar.close()
