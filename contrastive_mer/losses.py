"""Modality-pairwise symmetric InfoNCE (Franceschini et al., ICPR 2022).

For every pair of modalities (a, b) the embeddings of the same clip are positives and every other clip in the
batch is a negative, in both directions (a -> b and b -> a). The total loss is the mean over the pairs that have at
least two samples carrying both modalities.

Design points:

* each modality is L2-normalised by the caller once (the module does it); pairs reuse the same tensors;
* a sample missing a modality is masked out of that modality's pairs only: a pair scores the samples that
  carry both of its modalities (as queries and as negative keys);
* a pair with fewer than two valid samples contributes nothing: never NaN, even when a modality is absent from
  the whole batch;
* distributed training: each modality's embeddings and presence masks are gathered across ranks once per step
  (with gradient). ``local_loss=True`` scores only the local rows against every gathered column (labels offset by
  rank), and the result is scaled so that, after DDP's gradient averaging, values and gradients equal those of a
  single process holding the concatenated batch.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_mer import distributed


def pair_name(a: str, b: str) -> str:
    """Canonical name of an unordered modality pair (``"audio-video"``)."""
    return f"{a}-{b}"


def all_pairs(modalities: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of ``modalities``, in the given order."""
    return list(itertools.combinations(modalities, 2))


def parse_pairs(pairs: Sequence[str] | None, modalities: Sequence[str]) -> list[tuple[str, str]]:
    """Turn ``["audio-video", ...]`` into tuples, checking the names; ``None`` means every pair."""
    if not pairs:
        return all_pairs(modalities)
    parsed = []
    for name in pairs:
        parts = name.split("-")
        if len(parts) != 2 or parts[0] == parts[1] or any(p not in modalities for p in parts):
            raise ValueError(f"loss.pairs: {name!r} is not 'a-b' with two distinct modalities of {list(modalities)}")
        parsed.append((parts[0], parts[1]))
    return parsed


@dataclass
class PairwiseLossOutput:
    """Result of :func:`pairwise_infonce`.

    ``per_pair`` holds the symmetric loss of each pair that contributed, ``accuracy`` the in-batch cross-modal
    top-1 retrieval accuracy of each pair (mean of both directions), ``count`` the number of valid samples per pair.
    """

    loss: torch.Tensor
    per_pair: dict[str, torch.Tensor] = field(default_factory=dict)
    accuracy: dict[str, torch.Tensor] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)


class _PositiveIndexCache:
    """Caches the ``arange`` positive indices per (device, size, offset) to avoid rebuilding them every step."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int], torch.Tensor] = {}

    def get(self, size: int, offset: int, device: torch.device) -> torch.Tensor:
        key = (str(device), size, offset)
        if key not in self._cache:
            self._cache[key] = torch.arange(offset, offset + size, device=device)
        return self._cache[key]


_POSITIVES = _PositiveIndexCache()


def _directional_sums(queries: torch.Tensor, keys: torch.Tensor, query_valid: torch.Tensor,
                      key_valid: torch.Tensor, positives: torch.Tensor,
                      scale: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and number of correct top-1 predictions of ``queries`` against ``keys``.

    Invalid keys are removed from the softmax; invalid queries are left out of the sum.
    """
    logits = (queries @ keys.t()) * scale
    logits = logits.masked_fill(~key_valid.unsqueeze(0), float("-inf"))
    # rows of invalid queries may be all -inf; give them a finite dummy row so CE stays finite
    logits = torch.where(query_valid.unsqueeze(1), logits, torch.zeros_like(logits))
    ce = F.cross_entropy(logits, positives, reduction="none")
    ce_sum = (ce * query_valid).sum()
    correct = ((logits.argmax(dim=1) == positives) & query_valid).sum()
    return ce_sum, correct


def pairwise_infonce(embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                     logit_scales: Mapping[str, torch.Tensor | float], pairs: Sequence[tuple[str, str]],
                     gather: bool = False, local_loss: bool = True) -> PairwiseLossOutput:
    """Mean over modality pairs of the symmetric InfoNCE loss.

    Args:
        embeddings: modality -> ``(B, P)`` L2-normalised projections (normalised once by the caller).
        present: modality -> ``(B,)`` bool mask; False rows take no part in that modality's pairs.
        logit_scales: pair name -> inverse temperature (``1 / tau``), float or scalar tensor.
        pairs: the modality pairs to score.
        gather: gather embeddings and masks from every rank first (distributed training).
        local_loss: with ``gather``, score only this rank's rows as queries (cheaper, same gradients).
    """
    world, rank = distributed.world_size(), distributed.rank()
    gathered = gather and world > 1
    local_size = next(iter(embeddings.values())).shape[0]
    keys_z = {m: distributed.gather_with_grad(z) if gathered else z for m, z in embeddings.items()}
    keys_p = {m: distributed.gather_no_grad(p) if gathered else p for m, p in present.items()}
    if gathered and local_loss:
        offset = rank * local_size
        queries_z = dict(embeddings)
        queries_p = dict(present)
    else:
        offset = 0
        queries_z, queries_p = keys_z, keys_p
    n_queries = next(iter(queries_z.values())).shape[0]

    out = PairwiseLossOutput(loss=torch.zeros(()))
    contributions = []
    for a, b in pairs:
        name = pair_name(a, b)
        both_global = keys_p[a] & keys_p[b]
        n_valid = int(both_global.sum())
        out.count[name] = n_valid
        if n_valid < 2:
            continue
        device = queries_z[a].device
        positives = _POSITIVES.get(n_queries, offset, device)
        scale = logit_scales[name]
        q_valid = queries_p[a] & queries_p[b]
        ab_sum, ab_correct = _directional_sums(queries_z[a], keys_z[b], q_valid, both_global, positives, scale)
        ba_sum, ba_correct = _directional_sums(queries_z[b], keys_z[a], q_valid, both_global, positives, scale)
        pair_loss = (ab_sum + ba_sum) / (2 * n_valid)
        if gathered and local_loss:
            # each rank holds a slice of the global sum; DDP averages gradients over ranks, so scale by world
            pair_loss = pair_loss * world
            n_acc = max(int(q_valid.sum()), 1)
        else:
            n_acc = n_valid
        contributions.append(pair_loss)
        out.per_pair[name] = pair_loss.detach()
        out.accuracy[name] = ((ab_correct + ba_correct).float() / (2 * n_acc)).detach()

    if contributions:
        out.loss = torch.stack(contributions).mean()
    else:  # keep the graph connected so backward() works and gives zero gradients
        out.loss = sum((z.sum() * 0.0 for z in embeddings.values()), torch.zeros(()))
    return out


class PairwiseInfoNCE(nn.Module):
    """The pairwise loss as a module: holds the pairs and the (fixed or learnable) temperature of each pair.

    A learnable temperature is stored as a log inverse-temperature per pair (CLIP's ``logit_scale``) and clamped
    so that ``1 / tau <= max_logit_scale`` (CLIP uses 100): in the forward pass and, through :meth:`clamp_`,
    after every optimiser step.
    """

    def __init__(self, modalities: Sequence[str], temperature: float = 0.07, learnable_temperature: bool = False,
                 max_logit_scale: float = 100.0, pairs: Sequence[str] | None = None, gather: bool = False,
                 local_loss: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        if 1.0 / temperature > max_logit_scale:
            raise ValueError(f"loss.temperature {temperature} gives 1/tau above max_logit_scale {max_logit_scale}")
        self.pairs = parse_pairs(pairs, list(modalities))
        self.pair_names = [pair_name(a, b) for a, b in self.pairs]
        self.max_log_scale = math.log(max_logit_scale)
        self.learnable = learnable_temperature
        init = torch.full((len(self.pairs),), math.log(1.0 / temperature))
        if learnable_temperature:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init, persistent=False)
        self.gather = gather
        self.local_loss = local_loss

    def logit_scales(self) -> dict[str, torch.Tensor]:
        """Pair name -> current inverse temperature (clamped)."""
        scales = self.log_scale.clamp(max=self.max_log_scale).exp()
        return {name: scales[i] for i, name in enumerate(self.pair_names)}

    def temperatures(self) -> dict[str, float]:
        """Pair name -> current temperature, for logging."""
        return {name: float(1.0 / s) for name, s in self.logit_scales().items()}

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the learnable log-scales in place (call after each optimiser step)."""
        self.log_scale.clamp_(min=0.0, max=self.max_log_scale)

    def forward(self, embeddings: Mapping[str, torch.Tensor],
                present: Mapping[str, torch.Tensor]) -> PairwiseLossOutput:
        return pairwise_infonce(embeddings, present, self.logit_scales(), self.pairs,
                                gather=self.gather, local_loss=self.local_loss)
