"""The LightningModule of front-end instruction tuning (what :func:`~contrastive_mer.frontend.train.train_frontend`
fits): the front end's projectors and the LLM (with its LoRA adapters, if any) as one module, one AdamW over
the trainable tensors, and the row order of every epoch (:class:`EpochOrder`), split over DDP ranks.

A batch is a list of instruction-row indices; ``training_step`` reads their soft-token sources from the feature
store, projects them, splices them into the prompts and returns the LLM's target loss.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterator, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from contrastive_mer.frontend.front_end import FrontEnd
from contrastive_mer.frontend.instructions import InstructionRow


class EpochOrder(Sampler[int]):
    """Row indices of epoch ``e`` in the order ``random.Random(seed + e)`` shuffles ``range(n)``.

    ``offset`` is added to the epoch Lightning passes to :meth:`set_epoch` (a resumed run's first epoch is
    ``offset``). Under DDP rank ``r`` of ``world`` takes every ``world``-th row of that order, starting at ``r``,
    after the order is padded by repeating its start so that every rank gets ``ceil(n / world)`` rows (as
    ``DistributedSampler`` pads). With one process the order is the whole shuffle.

    >>> s = EpochOrder(5, seed=0, rank=1, world=2)
    >>> full = EpochOrder(5, seed=0)
    >>> len(s), list(s) == (list(full) + list(full)[:1])[1::2]
    (3, True)
    """

    def __init__(self, n: int, *, seed: int, offset: int = 0, rank: int = 0, world: int = 1):
        if n < 1 or world < 1 or not 0 <= rank < world:
            raise ValueError(f"EpochOrder: bad n={n}, rank={rank}, world={world}")
        self.n, self.seed, self.offset, self.rank, self.world = n, seed, offset, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this with its epoch counter before each epoch."""
        self.epoch = epoch

    def order(self) -> list[int]:
        """This rank's rows for the current epoch."""
        order = list(range(self.n))
        random.Random(self.seed + self.offset + self.epoch).shuffle(order)
        total = len(self) * self.world
        padded = (order * math.ceil(total / self.n))[:total]
        return padded[self.rank::self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)


def _as_list(indices: list[int]) -> list[int]:
    return list(indices)


class _RowIndices(Dataset[int]):
    """Item ``i`` is ``i``: a batch is a list of row indices."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class FrontEndTraining(pl.LightningModule):
    """Projectors + LLM trained on instruction rows; ``batch_inputs(rows, device)`` gives the LLM's keyword inputs.

    ``optimizer_state`` (from a training checkpoint) is loaded into the AdamW Lightning builds, so a resumed run
    continues with the same moments.
    """

    def __init__(self, front: FrontEnd, llm: Any, *, rows: Sequence[InstructionRow],
                 batch_inputs: Callable[[list[InstructionRow], torch.device], dict[str, Any]], lr: float,
                 weight_decay: float, batch_size: int, seed: int, start_epoch: int = 0,
                 optimizer_state: dict | None = None):
        super().__init__()
        self.front = front
        self.llm = llm
        self.rows = list(rows)
        self.batch_inputs = batch_inputs
        self.lr, self.weight_decay, self.batch_size, self.seed = lr, weight_decay, batch_size, seed
        self.start_epoch = start_epoch
        self.optimizer_state = optimizer_state

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """The projectors' parameters, then the LLM's trainable ones (LoRA), in the optimiser's order."""
        return self.front.trainable_parameters() + [p for p in self.llm.parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = torch.optim.AdamW(self.trained_parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer_state is not None:
            opt.load_state_dict(self.optimizer_state)
        return opt

    def train_dataloader(self) -> DataLoader:
        trainer = self._trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochOrder(len(self.rows), seed=self.seed, offset=self.start_epoch, rank=rank, world=world)
        return DataLoader(_RowIndices(len(self.rows)), batch_size=self.batch_size, sampler=sampler,
                          collate_fn=_as_list, num_workers=0)

    def training_step(self, batch: list[int], batch_idx: int) -> torch.Tensor:
        inputs = self.batch_inputs([self.rows[i] for i in batch], self.device)
        loss: torch.Tensor = self.llm(**inputs).loss
        return loss
