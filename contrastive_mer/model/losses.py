"""Modality-pairwise symmetric InfoNCE (Franceschini et al., ICPR 2022).

For every pair of modalities (a, b) the embeddings of the same clip are positives and every other clip in the
batch is a negative, in both directions (a -> b and b -> a). The total loss is the mean over the pairs that have at
least two samples carrying both modalities.

Design points:

* each modality is L2-normalised by the caller once (the module does it); pairs reuse the same tensors;
* a sample missing a modality is masked out of that modality's pairs only: a pair scores the samples that
  carry both of its modalities (as queries and as negative keys);
* a pair with fewer than two valid samples contributes nothing: never NaN, even when a modality is absent from
  the whole batch; every embedding still takes part in the graph with a zero gradient (DDP needs every
  parameter to receive one);
* one matmul per pair: the ``b -> a`` logits are the transpose of the ``a -> b`` logits (except in local-loss
  mode, where queries are local rows and keys are gathered rows);
* directional metrics (the two-window loss scores each ordered pair) use the same spelling with the anchor
  (query) modality first: ``"audio-video"`` anchors audio and scores video candidates, ``"video-audio"`` the
  reverse. A symmetric loss keys each unordered pair once, in the configured order;
* distributed training: each modality's embeddings and presence masks are gathered across ranks once per step
  (with gradient; ranks may hold different numbers of rows). ``local_loss=True`` scores only the local rows
  against every gathered column (labels offset by the rows of earlier ranks), and the result is scaled so that,
  after DDP's gradient averaging, values and gradients equal those of a single process holding the
  concatenated batch.

Every loss is a :class:`ContrastiveLoss` registered in :data:`LOSSES` under its ``loss.name``; the module builds it
with :func:`build_loss` and never asks which one it holds. :func:`check_config` checks the ``loss`` section.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from contrastive_mer import distributed
from contrastive_mer.errors import ConfigError, UserError
from contrastive_mer.registry import Registry, UnknownName


def pair_name(a: str, b: str) -> str:
    """The one spelling of a modality pair in metric keys (``"audio-video"``): the unordered pair of a symmetric
    loss, or, for directional metrics, the ordered pair with the anchor (query) modality first."""
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
class LossOutput:
    """What every :class:`ContrastiveLoss` returns: the scalar ``loss`` and per-pair metrics keyed by
    :func:`pair_name`.

    ``per_pair`` holds the loss of each pair that contributed, ``accuracy`` its in-batch top-1 accuracy, ``count``
    the number of valid samples per pair. :func:`pairwise_infonce` keys unordered pairs (loss and accuracy are the
    mean of both directions); :func:`two_window_pairwise_loss` keys ordered pairs, anchor modality first.
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


def _pair_sums(qa: torch.Tensor, qb: torch.Tensor, ka: torch.Tensor, kb: torch.Tensor, *, positives: torch.Tensor,
               scale: torch.Tensor | float, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of both directions (a -> b and b -> a) and their number of correct top-1 picks.

    Query row ``i`` of ``qa`` / ``qb`` has its positive at key column ``positives[i]``. With ``shared``
    (queries are the keys, positives on the diagonal) one matmul serves both directions: ``b -> a`` is the
    transpose of ``a -> b``, and autograd sums both directions' gradients into that one product.
    """
    logits_ab = (qa @ kb.t()) * scale
    logits_ba = logits_ab.t() if shared else (qb @ ka.t()) * scale
    ce = (F.cross_entropy(logits_ab, positives, reduction="sum")
          + F.cross_entropy(logits_ba, positives, reduction="sum"))
    with torch.no_grad():  # argmax over dim 0 of the contiguous logits is faster than over the transpose's dim 1
        picks_ba = logits_ab.argmax(dim=0) if shared else logits_ba.argmax(dim=1)
        correct = (logits_ab.argmax(dim=1) == positives).sum() + (picks_ba == positives).sum()
    return ce, correct


def _graph_anchor(embeddings: Mapping[str, torch.Tensor], unused_scales: Sequence[torch.Tensor | float],
                  like: torch.Tensor) -> torch.Tensor:
    """A zero that depends on every embedding and on the unused learnable scales.

    Added to the loss so that every encoder (and temperature) receives a gradient, zero where its modality
    (pair) did not count this step: DDP without ``find_unused_parameters`` requires every parameter to take part.
    """
    zero = like.new_zeros(())
    for z in embeddings.values():
        zero = zero + z.sum() * 0.0
    for s in unused_scales:
        if isinstance(s, torch.Tensor) and s.requires_grad:
            zero = zero + s.sum() * 0.0
    return zero


def pairwise_infonce(embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                     logit_scales: Mapping[str, torch.Tensor | float], pairs: Sequence[tuple[str, str]],
                     *, gather: bool = False, local_loss: bool = True) -> LossOutput:
    """Mean over modality pairs of the symmetric InfoNCE loss.

    Args:
        embeddings: modality -> ``(B, P)`` L2-normalised projections (normalised once by the caller).
        present: modality -> ``(B,)`` bool mask; False rows take no part in that modality's pairs.
        logit_scales: pair name -> inverse temperature (``1 / tau``), float or scalar tensor.
        pairs: the modality pairs to score.
        gather: gather embeddings and masks from every rank first (distributed training). Ranks may hold
            different numbers of rows.
        local_loss: with ``gather``, score only this rank's rows as queries (cheaper, same gradients).

    A pair's valid rows (both modalities present) are selected once; when every row is valid no indexing is
    done. Without ``local_loss`` one matmul per pair gives both directions.
    """
    first = next(iter(embeddings.values()))
    local_size, device = first.shape[0], first.device
    gathered = gather and distributed.is_distributed()
    world = distributed.world_size() if gathered else 1
    local = gathered and local_loss
    offset = 0
    keys_z, keys_p = dict(embeddings), dict(present)
    if gathered:
        sizes = distributed.gather_sizes(local_size, device)
        offset = sum(sizes[:distributed.rank()])
        keys_z = {m: distributed.gather_with_grad(z, sizes) for m, z in embeddings.items()}
        keys_p = {m: distributed.gather_no_grad(p, sizes) for m, p in present.items()}
    n_keys = next(iter(keys_z.values())).shape[0]

    valid = [keys_p[a] & keys_p[b] for a, b in pairs]
    counts = torch.stack([v.sum() for v in valid]).tolist() if valid else []  # one host sync for all pairs
    out = LossOutput(loss=first.new_zeros(()))
    contributions, unused_scales = [], []
    for (a, b), key_valid, n_valid in zip(pairs, valid, counts):
        name = pair_name(a, b)
        out.count[name] = int(n_valid)
        if n_valid < 2:
            unused_scales.append(logit_scales[name])
            continue
        if n_valid == n_keys:  # every row carries both modalities
            ka, kb = keys_z[a], keys_z[b]
            if local:
                qa, qb = embeddings[a], embeddings[b]
                positives = _POSITIVES.get(local_size, offset, device)
            else:
                qa, qb = ka, kb
                positives = _POSITIVES.get(n_keys, 0, device)
        else:
            key_idx = key_valid.nonzero().squeeze(1)
            ka, kb = keys_z[a].index_select(0, key_idx), keys_z[b].index_select(0, key_idx)
            if local:  # this rank's valid rows, and where they sit among the gathered valid rows
                query_idx = (present[a] & present[b]).nonzero().squeeze(1)
                qa, qb = embeddings[a].index_select(0, query_idx), embeddings[b].index_select(0, query_idx)
                positives = (key_valid.cumsum(0) - 1).index_select(0, query_idx + offset)
            else:
                qa, qb = ka, kb
                positives = _POSITIVES.get(int(n_valid), 0, device)
        ce_sum, correct = _pair_sums(qa, qb, ka, kb, positives=positives, scale=logit_scales[name], shared=not local)
        pair_loss = ce_sum / (2 * n_valid)
        if local:
            # each rank holds a slice of the global sum; DDP averages gradients over ranks, so scale by world
            pair_loss = pair_loss * world
        contributions.append(pair_loss)
        out.per_pair[name] = pair_loss.detach()
        out.accuracy[name] = (correct.float() / (2 * max(qa.shape[0], 1))).detach()

    anchor = _graph_anchor(embeddings, unused_scales, first)
    out.loss = torch.stack(contributions).mean() + anchor if contributions else anchor
    return out


def variance_covariance(z: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's variance and covariance terms of one modality's ``(N, P)`` projections (Bardes et al., ICLR 2022).

    The rows are scaled by ``sqrt(P)`` first, so that L2-normalised projections spread evenly over the dimensions
    have a per-dimension variance of about 1. ``variance``: mean over dimensions of ``max(0, 1 - sqrt(var + eps))``
    (unbiased variance over the rows); ``covariance``: sum of the squared off-diagonal entries of the covariance
    matrix, divided by ``P``. Both are 0 for fewer than two rows."""
    n, p = z.shape
    if n < 2:
        zero = z.sum() * 0.0
        return zero, zero
    x = z * math.sqrt(p)
    x = x - x.mean(dim=0, keepdim=True)
    cov = x.T @ x / (n - 1)
    std = torch.sqrt(torch.diagonal(cov) + eps)
    variance = F.relu(1.0 - std).mean()
    off = cov - torch.diag(torch.diagonal(cov))
    return variance, off.pow(2).sum() / p


class ContrastiveLoss(nn.Module, ABC):
    """The interface the module trains with; every loss in :data:`LOSSES` implements it.

    ``forward(embeddings, present, labels)`` takes a batch's rows as the module has them: modality -> ``(N, P)``
    L2-normalised projections, modality -> ``(N,)`` presence masks and the batch's labels (name -> ``(N,)``), and
    returns a :class:`LossOutput`. A loss that reads several windows of each clip from the rows (the two-window loss)
    says so in :attr:`rows_per_clip` and arranges the rows itself.

    Attributes the training loop reads:

    * :attr:`rows_per_clip`: rows of a batch per clip (the logged batch size is ``N // rows_per_clip``);
    * :attr:`gather`: every rank scores the same pairs (metrics may be averaged across ranks);
    * :meth:`temperatures`: pair name -> current temperature, logged every step;
    * :meth:`clamp_`: called after every optimiser step (clamps learnable temperatures; a no-op otherwise).

    Learnable tensors are the loss's own parameters and keep their names in the state dict (``loss_fn.<name>``).
    """

    rows_per_clip: int = 1
    gather: bool = False

    def __init__(self, modalities: Sequence[str], pairs: Sequence[str] | None = None):
        super().__init__()
        self.pairs = parse_pairs(pairs, list(modalities))
        self.pair_names = [pair_name(a, b) for a, b in self.pairs]

    @classmethod
    @abstractmethod
    def from_config(cls, loss_cfg: Any, modalities: Sequence[str]) -> ContrastiveLoss:
        """The loss configured by the ``loss`` section (``loss_cfg``) for ``modalities``."""

    @classmethod
    def check_options(cls, loss_cfg: Any) -> None:
        """Raise :class:`~contrastive_mer.config.ConfigError` (one line, naming the key) for a ``loss`` option this
        loss does not take; the shared checks are in :func:`check_config`."""

    @abstractmethod
    def forward(self, embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                labels: Mapping[str, torch.Tensor] | None = None) -> LossOutput:
        """The loss of one batch and its per-pair metrics."""

    @abstractmethod
    def temperatures(self) -> dict[str, float]:
        """Pair name -> current temperature, for logging."""

    def clamp_(self) -> None:
        """Keep learnable settings in range after an optimiser step (nothing to do by default)."""


#: ``loss.name`` -> the :class:`ContrastiveLoss` subclass
LOSSES: Registry[type[ContrastiveLoss]] = Registry("loss")


def build_loss(loss_cfg: Any, modalities: Sequence[str]) -> ContrastiveLoss:
    """The loss named by ``loss_cfg.name``, built by its own :meth:`ContrastiveLoss.from_config`."""
    return LOSSES.get(loss_cfg.name).from_config(loss_cfg, modalities)


def check_config(loss_cfg: Any, modalities: Sequence[str]) -> None:
    """Check the ``loss`` section: a known name, pairs of the model's modalities, a temperature that fits
    ``max_logit_scale``, and the options of the named loss. Raises a one-line
    :class:`~contrastive_mer.config.ConfigError` naming the key. (Whether ``data.two_window`` fits the loss is
    :func:`contrastive_mer.data.windows.check_two_window`'s.)"""
    try:
        loss_cls = LOSSES.get(loss_cfg.name)
    except UnknownName as err:
        raise ConfigError(f"loss.name: {err}") from None
    try:
        parse_pairs(list(loss_cfg.pairs), list(modalities))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if loss_cfg.temperature <= 0 or 1.0 / loss_cfg.temperature > loss_cfg.max_logit_scale:
        raise ConfigError(f"loss.temperature: {loss_cfg.temperature} must be > 0 and >= 1/max_logit_scale")
    loss_cls.check_options(loss_cfg)


@LOSSES.register("pairwise_infonce")
class PairwiseInfoNCE(ContrastiveLoss):
    """The pairwise loss as a module: holds the pairs and the (fixed or learnable) temperature of each pair.

    A learnable temperature is stored as a log inverse-temperature per pair (CLIP's ``logit_scale``) and clamped
    so that ``1 / tau <= max_logit_scale`` (CLIP uses 100): in the forward pass and, through :meth:`clamp_`,
    after every optimiser step.
    """

    def __init__(self, modalities: Sequence[str], temperature: float = 0.07, *, learnable_temperature: bool = False,
                 max_logit_scale: float = 100.0, pairs: Sequence[str] | None = None, gather: bool = False,
                 local_loss: bool = True, variance_weight: float = 0.0, covariance_weight: float = 0.0):
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        if 1.0 / temperature > max_logit_scale:
            raise ValueError(f"loss.temperature {temperature} gives 1/tau above max_logit_scale {max_logit_scale}")
        super().__init__(modalities, pairs)
        self.max_log_scale = math.log(max_logit_scale)
        self.learnable = learnable_temperature
        init = torch.full((len(self.pairs),), math.log(1.0 / temperature))
        if learnable_temperature:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init, persistent=False)
        self.gather = gather
        self.local_loss = local_loss
        if variance_weight < 0 or covariance_weight < 0:
            raise ValueError(f"loss.variance_weight / covariance_weight must be >= 0, got {variance_weight}, "
                             f"{covariance_weight}")
        self.variance_weight = float(variance_weight)
        self.covariance_weight = float(covariance_weight)

    @classmethod
    def from_config(cls, loss_cfg: Any, modalities: Sequence[str]) -> PairwiseInfoNCE:
        return cls(modalities, loss_cfg.temperature, learnable_temperature=loss_cfg.learnable_temperature,
                   max_logit_scale=loss_cfg.max_logit_scale, pairs=list(loss_cfg.pairs), gather=loss_cfg.gather,
                   local_loss=loss_cfg.local_loss, variance_weight=loss_cfg.get("variance_weight", 0.0),
                   covariance_weight=loss_cfg.get("covariance_weight", 0.0))

    @classmethod
    def check_options(cls, loss_cfg: Any) -> None:
        if loss_cfg.label is not None or loss_cfg.count_offset != 0.0 or loss_cfg.anchor_rule != "all":
            raise ConfigError("loss.label / loss.count_offset / loss.anchor_rule: only for "
                              "loss.name=two_window_supcon")
        for key in ("variance_weight", "covariance_weight"):
            value = loss_cfg.get(key, 0.0)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"loss.{key}: {value} must be a finite number >= 0")

    def logit_scales(self) -> dict[str, torch.Tensor]:
        """Pair name -> current inverse temperature (clamped)."""
        scales = self.log_scale.clamp(max=self.max_log_scale).exp()
        return {name: scales[i] for i, name in enumerate(self.pair_names)}

    def temperatures(self) -> dict[str, float]:
        """Pair name -> current temperature, for logging."""
        return {name: float(1.0 / s.detach()) for name, s in self.logit_scales().items()}

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the learnable log-scales in place (call after each optimiser step); a fixed temperature stays."""
        if self.learnable:
            self.log_scale.clamp_(min=0.0, max=self.max_log_scale)

    def forward(self, embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                labels: Mapping[str, torch.Tensor] | None = None) -> LossOutput:
        """``embeddings``: modality -> ``(B, P)``; ``present``: modality -> ``(B,)``; ``labels`` unused. With
        ``variance_weight`` / ``covariance_weight``, each paired modality's :func:`variance_covariance` over its
        present rows (this process's rows) is added, averaged over the modalities."""
        out = pairwise_infonce(embeddings, present, self.logit_scales(), self.pairs,
                               gather=self.gather, local_loss=self.local_loss)
        if self.variance_weight or self.covariance_weight:
            used = list(dict.fromkeys(m for pair in self.pairs for m in pair))
            terms = [variance_covariance(embeddings[m][present[m].bool()]) for m in used]
            reg = sum(self.variance_weight * v + self.covariance_weight * c for v, c in terms) / len(terms)
            out.loss = out.loss + reg
        return out


# --------------------------------------------------------------------------------------------------------------
# The official code's loss (ricfrr/mpuc-mer, utils/SupConSeparate.py used pairwise): an option beside the default.
# --------------------------------------------------------------------------------------------------------------


def two_window_supcon(za: torch.Tensor, zb: torch.Tensor, temperature: float = 0.07,
                      labels: torch.Tensor | None = None, *, count_offset: float = 0.0) -> torch.Tensor:
    """Two-window cross-modal contrastive loss of one ordered modality pair ``a -> b`` (SupCon form).

    Each clip is seen through two temporal windows. Anchors are the ``2B`` window embeddings of modality ``a``,
    candidates the ``2B`` window embeddings of modality ``b`` minus the anchor's same-window partner (the same clip
    and window in ``b``), so each anchor scores ``2B - 1`` candidates. Without ``labels`` the single positive is the
    OTHER window of the same clip in ``b``; with ``labels`` (supervised contrastive) every candidate whose clip
    has the anchor's label is a positive. Per anchor::

        loss_i = -1 / (|P(i)| + count_offset) * sum_{p in P(i)} log softmax_{c != partner(i)}(a_i . b_c / tau)[p]

    and the result is the mean over the ``2B`` anchors. ``count_offset=1`` reproduces the official code's
    ``mask.sum(1) + 1`` denominator (which halves the label-free loss); 0, the default, is SupCon's mean.

    Args:
        za, zb: ``(B, 2, P)`` L2-normalised embeddings of modalities ``a`` and ``b``, window on axis 1.
        temperature: softmax temperature ``tau``.
        labels: optional ``(B,)`` integer class labels (supervised variant).
        count_offset: added to the number of positives in each anchor's denominator.
    """
    if za.dim() != 3 or za.shape[1] != 2 or za.shape != zb.shape:
        raise ValueError(f"two_window_supcon expects two (B, 2, P) tensors of one shape, got {tuple(za.shape)} "
                         f"and {tuple(zb.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch = za.shape[0]
    anchors = za.transpose(0, 1).reshape(2 * batch, -1)  # row w * B + i: clip i, window w
    keys = zb.transpose(0, 1).reshape(2 * batch, -1)
    partner = torch.eye(2 * batch, dtype=torch.bool, device=za.device)
    logits = (anchors @ keys.t() / temperature).masked_fill(partner, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    if labels is None:
        group = torch.arange(batch, device=za.device).repeat(2)
    else:
        if labels.shape != (batch,):
            raise ValueError(f"labels must be ({batch},) class indices, got shape {tuple(labels.shape)}")
        group = labels.to(za.device).repeat(2)
    positive = (group.unsqueeze(0) == group.unsqueeze(1)) & ~partner
    pos_sum = log_prob.masked_fill(~positive, 0.0).sum(1)
    return -(pos_sum / (positive.sum(1).to(log_prob.dtype) + count_offset)).mean()


def two_window_pairwise_loss(embeddings: Mapping[str, torch.Tensor],
                             present: Mapping[str, torch.Tensor] | None = None, *, temperature: float = 0.07,
                             labels: torch.Tensor | None = None, count_offset: float = 0.0,
                             pairs: Sequence[tuple[str, str]] | None = None,
                             never_anchor: str | None = None) -> LossOutput:
    """Mean of :func:`two_window_supcon` over the ordered modality pairs (both directions of each pair).

    Args:
        embeddings: modality -> ``(B, 2, P)`` L2-normalised projections of the two windows of each clip.
        present: optional modality -> ``(B,)`` bool mask; a pair scores only the clips carrying both modalities,
            and an ordered pair with fewer than two such clips is skipped (as in :func:`pairwise_infonce`).
        temperature, labels, count_offset: as in :func:`two_window_supcon`.
        pairs: unordered pairs to score (default: every pair of ``embeddings``' modalities).
        never_anchor: a modality that is never the anchor: the ordered pairs starting with it are not scored
            (the official supervised rule, ``loss.anchor_rule: official``: its last modality is never an anchor).

    ``per_pair``, ``accuracy`` and ``count`` are keyed by ordered pair, anchor modality first (``"audio-video"``:
    audio anchors, video candidates; ``"video-audio"`` the reverse direction); ``accuracy`` is the share of
    anchors whose best-scoring candidate is a positive.
    """
    names = list(embeddings)
    first = embeddings[names[0]]
    out = LossOutput(loss=first.new_zeros(()))
    contributions = []
    for a, b in all_pairs(names) if pairs is None else pairs:
        for src, dst in ((a, b), (b, a)):
            if src == never_anchor:
                continue
            name = pair_name(src, dst)
            za, zb = embeddings[src], embeddings[dst]
            lab = labels
            if present is not None:
                keep = (present[src] & present[dst]).nonzero().squeeze(1)
                if keep.numel() < za.shape[0]:
                    za, zb = za.index_select(0, keep), zb.index_select(0, keep)
                    lab = None if labels is None else labels.index_select(0, keep.to(labels.device))
            out.count[name] = int(za.shape[0])
            if za.shape[0] < 2:
                continue
            loss = two_window_supcon(za, zb, temperature, lab, count_offset=count_offset)
            contributions.append(loss)
            out.per_pair[name] = loss.detach()
            with torch.no_grad():
                out.accuracy[name] = _two_window_accuracy(za, zb, lab)
    anchor = _graph_anchor(embeddings, [], first)
    out.loss = torch.stack(contributions).mean() + anchor if contributions else anchor
    return out


def _two_window_accuracy(za: torch.Tensor, zb: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Share of the ``2B`` anchors of :func:`two_window_supcon` whose top candidate is a positive."""
    batch = za.shape[0]
    scores = za.transpose(0, 1).reshape(2 * batch, -1) @ zb.transpose(0, 1).reshape(2 * batch, -1).t()
    scores.fill_diagonal_(float("-inf"))
    group = torch.arange(batch, device=za.device).repeat(2) if labels is None else labels.to(za.device).repeat(2)
    return (group[scores.argmax(1)] == group).float().mean()


#: ``loss.anchor_rule`` values of the two-window loss
ANCHOR_RULES = ("all", "official")


@LOSSES.register("two_window_supcon")
class TwoWindowLoss(ContrastiveLoss):
    """:func:`two_window_pairwise_loss` as a loss (``loss.name: two_window_supcon``): a fixed temperature, the
    configured pairs, the optional label whose classes are positives, and ``count_offset``.

    It reads two-window batches (``data.two_window``): rows ``0..B-1`` are window 0 of ``B`` clips, rows
    ``B..2B-1`` window 1 of the same clips; a pair scores the clips present in both modalities in both windows.
    Metrics are keyed by ordered pair, anchor modality first (see :func:`two_window_pairwise_loss`). It scores each
    process's batch alone (``loss.gather`` does not apply; under DDP the gradients are averaged over ranks as usual).

    ``anchor_rule``: ``all`` (default) scores both directions of every pair; ``official`` never uses the last
    modality (in ``model.modalities`` order) as an anchor, as the official code's supervised branch does
    (``train.py``, ``train``: ``if not (idx_feat == len(l_contr_feat) - 1)``; its order is audio, landmarks,
    video, text). The official code applies that rule only with labels (``unsupervised: False``); here it is
    independent of ``label``.
    """

    rows_per_clip = 2

    def __init__(self, modalities: Sequence[str], temperature: float = 0.07, *, pairs: Sequence[str] | None = None,
                 label: str | None = None, count_offset: float = 0.0, anchor_rule: str = "all"):
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        if anchor_rule not in ANCHOR_RULES:
            raise ValueError(f"loss.anchor_rule must be one of {', '.join(ANCHOR_RULES)}, got {anchor_rule!r}")
        super().__init__(modalities, pairs)
        self.temperature = temperature
        self.label = label
        self.count_offset = count_offset
        self.anchor_rule = anchor_rule
        self.never_anchor = list(modalities)[-1] if anchor_rule == "official" else None

    @classmethod
    def from_config(cls, loss_cfg: Any, modalities: Sequence[str]) -> TwoWindowLoss:
        return cls(modalities, loss_cfg.temperature, pairs=list(loss_cfg.pairs), label=loss_cfg.label,
                   count_offset=loss_cfg.count_offset, anchor_rule=loss_cfg.anchor_rule)

    @classmethod
    def check_options(cls, loss_cfg: Any) -> None:
        if loss_cfg.learnable_temperature:
            raise ConfigError("loss.learnable_temperature: not available with two_window_supcon (fixed temperature)")
        if loss_cfg.get("variance_weight", 0.0) or loss_cfg.get("covariance_weight", 0.0):
            raise ConfigError("loss.variance_weight / loss.covariance_weight: only for loss.name=pairwise_infonce")
        if loss_cfg.anchor_rule not in ANCHOR_RULES:
            raise ConfigError(f"loss.anchor_rule: {loss_cfg.anchor_rule!r} is not one of {', '.join(ANCHOR_RULES)}")

    def temperatures(self) -> dict[str, float]:
        return {name: self.temperature for name in self.pair_names}

    def forward(self, embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                labels: Mapping[str, torch.Tensor] | None = None) -> LossOutput:
        """``embeddings``: modality -> ``(2B, P)`` rows of a two-window batch; ``present``: modality -> ``(2B,)``;
        ``labels``: label name -> ``(2B,)`` (read when ``label`` is set)."""
        half = next(iter(embeddings.values())).shape[0] // 2
        windows = {m: torch.stack([z[:half], z[half:2 * half]], dim=1) for m, z in embeddings.items()}
        both = {m: p[:half] & p[half:2 * half] for m, p in present.items()}
        clip_labels = None
        if self.label is not None:
            if labels is None or self.label not in labels:
                raise UserError(f"loss.label: the batch has no label {self.label!r}; it has "
                                f"{sorted(labels or {})}")
            clip_labels = labels[self.label][:half]
        return two_window_pairwise_loss(windows, both, temperature=self.temperature, labels=clip_labels,
                                        count_offset=self.count_offset, pairs=self.pairs,
                                        never_anchor=self.never_anchor)
