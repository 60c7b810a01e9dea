"""Lightning DataModule: adapter -> records -> group-disjoint train/val split -> datasets -> loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, DistributedSampler

from contrastive_mer.data.dataset import MERDataset
from contrastive_mer.data.datasets import build_adapter
from contrastive_mer.data.datasets.base import ClipRecord, CorpusAdapter, add_data_settings
from contrastive_mer.data.kinds import build_preprocessor
from contrastive_mer.data.samplers import GroupBatchSampler
from contrastive_mer.data.transforms import Preprocessor


def build_preprocessors(cfg: DictConfig) -> dict[str, Preprocessor]:
    """One preprocessor per configured modality, chosen by its encoder's input kind (or ``input``); each
    reads the adapter input named by the modality's ``source`` (default: the modality's name)."""
    return {name: build_preprocessor(mod, name) for name, mod in cfg.model.modalities.items()}


def build_corpus(cfg: DictConfig, overrides: dict[str, Any] | None = None) -> CorpusAdapter:
    """The adapter named by ``data.dataset`` with ``data.options`` (+ ``data.root``) and ``overrides``."""
    from contrastive_mer.config import container_dict

    options = container_dict(cfg.data.options, "data.options", resolve=True) if cfg.data.options else {}
    if cfg.data.root is not None:
        options["root"] = cfg.data.root
    add_data_settings(cfg.data, options)
    options.update(overrides or {})
    return build_adapter(cfg.data.dataset, **options)


def split_records(records: Sequence[ClipRecord], group: str, val_fraction: float,
                  seed: int, *, val_groups: Sequence[str] | None = None) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Group-disjoint (e.g. speaker-disjoint) train/validation split of ``records``: the clips of ``val_groups``
    validate when given (ValueError naming a group without clips), else a seeded ``val_fraction`` of the groups."""
    if val_groups:
        names = {str(g) for g in val_groups}
        found = {str(r.groups.get(group, r.id)) for r in records}
        if names - found:
            raise ValueError(f"data.val_groups: {sorted(names - found)} have no clips; {group} values are "
                             f"{sorted(found)}")
        is_val = [str(r.groups.get(group, r.id)) in names for r in records]
        return ([r for r, v in zip(records, is_val) if not v], [r for r, v in zip(records, is_val) if v])
    if val_fraction <= 0:
        return list(records), []
    from contrastive_mer.data.splits import group_train_val_split

    groups = [r.groups.get(group, r.id) for r in records]
    train_idx, val_idx = group_train_val_split(groups, val_fraction, seed)
    return [records[i] for i in train_idx], [records[i] for i in val_idx]


class MERDataModule(pl.LightningDataModule):
    """Builds the train and validation loaders of pretraining (extraction reads every record through
    :func:`contrastive_mer.extract.encode.encode_records` instead)."""

    def __init__(self, cfg: DictConfig, adapter: CorpusAdapter | None = None):
        super().__init__()
        self.cfg = cfg
        self.adapter = adapter
        self.preprocessors: dict[str, Preprocessor] = {}
        self.train_set: MERDataset | None = None
        self.val_set: MERDataset | None = None
        self.records: list[ClipRecord] = []
        self.splits: dict[str, list[ClipRecord]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        d = self.cfg.data
        self.adapter = self.adapter or build_corpus(self.cfg)
        self.records = self.adapter.records()
        if not self.records:
            raise ValueError(f"dataset {d.dataset!r} lists no clips (root: {d.root})")
        self.preprocessors = build_preprocessors(self.cfg)
        train, val = split_records(self.records, d.split_group, d.val_fraction, self.cfg.seed,
                                   val_groups=d.val_groups)
        self.splits = {"train": train, "val": val} if val else {"train": train}
        self.train_set = self.dataset(train)
        # Records come ordered (by speaker, emotion, ...): unshuffled validation batches would hold one speaker's
        # clips of one emotion, so the validation loss would measure something else than the training loss. One
        # fixed permutation keeps validation batches mixed like training batches and identical every epoch.
        order = np.random.default_rng(self.cfg.seed).permutation(len(val))
        self.val_set = self.dataset([val[i] for i in order]) if val else None

    def summary(self, pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """Clips, per-modality coverage (and of each modality pair in ``pairs``) and groups per split, with
        warnings (see :func:`contrastive_mer.data.summary.data_summary`); call after :meth:`setup`."""
        from contrastive_mer.data.summary import data_summary

        d = self.cfg.data
        sources = {m: p.source or m for m, p in self.preprocessors.items()}  # as MERDataset reads them
        out = {"dataset": d.dataset, "root": None if d.root is None else str(d.root)}
        out.update(data_summary(self.splits, sources, d.split_group, d.batch_size,
                                skipped=getattr(self.adapter, "skipped", ()), pairs=pairs))
        return out

    def split(self) -> dict[str, Any]:
        """The train/validation split as saved in ``split.json`` (clip ids per part)."""
        from contrastive_mer.data.summary import split_ids

        d = self.cfg.data
        return split_ids(self.splits, d.split_group, self.cfg.seed, d.val_fraction)

    def dataset(self, records: Sequence[ClipRecord]) -> MERDataset:
        d = self.cfg.data
        if self.adapter is None:
            raise RuntimeError("MERDataModule.dataset: no adapter yet; call setup() first")
        cache_dir = Path(d.cache_dir) if d.cache_dir else None
        return MERDataset(self.adapter, records, self.preprocessors, d.cache, cache_dir=cache_dir,
                          normalize=d.normalize, normalize_min_clips=d.normalize_min_clips)

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def loader(self, dataset: MERDataset, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        """A loader that shards across DDP ranks itself (the Trainer runs with ``use_distributed_sampler=False``)."""
        rank, world = self._rank_world()
        sampler: DistributedSampler[Any] | None = None
        if world > 1:
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                         seed=self.cfg.seed, drop_last=drop_last)
            shuffle = False
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, sampler=sampler,
                          **self._loader_kwargs(train=dataset is self.train_set))

    def _loader_kwargs(self, *, train: bool = True) -> dict[str, Any]:
        """Workers and the collate function (two windows per clip with ``data.two_window``: data/windows.py)."""
        from contrastive_mer.data.windows import make_collator

        workers = self.cfg.data.num_workers
        return {"num_workers": workers, "persistent_workers": workers > 0,
                "collate_fn": make_collator(self.cfg, self.preprocessors, train=train),
                "pin_memory": torch.cuda.is_available()}

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        d = self.cfg.data
        drop_last = d.drop_last and len(self.train_set) > d.batch_size
        if d.batch_grouping is None:
            return self.loader(self.train_set, d.batch_size, True, drop_last)
        rank, world = self._rank_world()
        groups = [r.groups.get(d.batch_grouping, r.id) for r in self.train_set.records]
        sampler = GroupBatchSampler(groups, d.batch_size, d.groups_per_batch, drop_last=drop_last, seed=self.cfg.seed,
                                    rank=rank, world_size=world)
        return DataLoader(self.train_set, batch_sampler=sampler, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        # default: the training batch size, so that validation and training losses (log B at chance) compare
        d = self.cfg.data
        return self.loader(self.val_set, d.eval_batch_size or d.batch_size, False, False)
