"""Projectors from an encoder's output into the LLM hidden size: linear, 2-layer MLP, query-based resampler.

Every projector takes a padded sequence ``(B, T, D)`` with valid lengths ``(B,)`` and returns soft tokens
``(B, N, H)`` with the number of valid tokens per row ``(B,)``. A pooled feature enters as a one-frame sequence.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def segment_mean(sequence: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """Average the valid frames of each row over ``n`` equal segments -> ``(B, n, D)``.

    Row ``b`` with ``L`` valid frames: segment ``k`` covers frames ``[floor(k L / n), ceil((k + 1) L / n))``
    (as adaptive average pooling does), so every segment holds at least one frame when ``L >= 1``.
    """
    b, t, _ = sequence.shape
    length = lengths.to(sequence.device).clamp(min=1, max=t).unsqueeze(1)  # (B, 1)
    k = torch.arange(n, device=sequence.device).unsqueeze(0)  # (1, n)
    start = torch.div(k * length, n, rounding_mode="floor")  # (B, n)
    end = -torch.div(-(k + 1) * length, n, rounding_mode="floor")  # ceil
    steps = torch.arange(t, device=sequence.device).view(1, 1, t)
    weights = ((steps >= start.unsqueeze(-1)) & (steps < end.unsqueeze(-1))).to(sequence.dtype)  # (B, n, T)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.bmm(weights, sequence)


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class TokenMapper(nn.Module):
    """Linear or 2-layer MLP projector.

    ``expand`` (one vector -> ``n`` tokens): the first valid frame (the pooled feature) is mapped to ``n * H``.
    Otherwise the valid frames are averaged over ``n`` segments (:func:`segment_mean`) and each segment is
    mapped to ``H``; ``n == 0`` maps every valid frame (one token per frame, the count being the length).
    """

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int, *, expand: bool, kind: str = "mlp",
                 hidden: int | None = None):
        super().__init__()
        if expand and num_tokens < 1:
            raise ValueError("a feature-level projector needs num_tokens >= 1")
        self.num_tokens, self.expand, self.out_dim = num_tokens, expand, out_dim
        width = out_dim * num_tokens if expand else out_dim
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, width)
        elif kind == "mlp":
            self.net = _mlp(in_dim, hidden or out_dim, width)
        else:
            raise ValueError(f"unknown token mapper kind {kind!r}; expected 'linear' or 'mlp'")

    def forward(self, sequence: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = sequence.shape[0]
        if self.expand:
            out = self.net(sequence[:, 0]).view(b, self.num_tokens, self.out_dim)
            return out, torch.full((b,), self.num_tokens, dtype=torch.long, device=sequence.device)
        if self.num_tokens == 0:
            return self.net(sequence), lengths.to(sequence.device).long()
        pooled = segment_mean(sequence, lengths, self.num_tokens)
        return self.net(pooled), torch.full((b,), self.num_tokens, dtype=torch.long, device=sequence.device)


def sinusoidal_positions(t: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(t, dim)`` fixed sinusoidal time encoding (so the resampler sees frame order)."""
    pos = torch.arange(t, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(t, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out.to(dtype)


class ResamplerBlock(nn.Module):
    """Pre-norm cross-attention of the queries to the frames, then a feed-forward layer."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = _mlp(dim, 4 * dim, dim)

    def forward(self, queries: torch.Tensor, frames: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(frames)
        attended, _ = self.attn(self.norm_q(queries), kv, kv, key_padding_mask=pad, need_weights=False)
        queries = queries + attended
        return queries + self.ff(self.norm_ff(queries))


class Resampler(nn.Module):
    """``N`` learned queries cross-attend to the valid frames (padding masked by the length) -> ``(B, N, H)``."""

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int, *, dim: int = 256, heads: int = 4,
                 layers: int = 1):
        super().__init__()
        if num_tokens < 1:
            raise ValueError("the resampler needs num_tokens >= 1 (its number of queries)")
        self.num_tokens = num_tokens
        self.inp = nn.Linear(in_dim, dim)
        self.queries = nn.Parameter(torch.randn(num_tokens, dim) * dim ** -0.5)
        self.blocks = nn.ModuleList([ResamplerBlock(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, sequence: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = sequence.shape
        frames = self.inp(sequence)
        frames = frames + sinusoidal_positions(t, frames.shape[-1], frames.device, frames.dtype)
        valid = lengths.to(sequence.device).clamp(min=1).unsqueeze(1)  # absent rows: attend to frame 0
        pad = torch.arange(t, device=sequence.device).unsqueeze(0) >= valid
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        for block in self.blocks:
            q = block(q, frames, pad)
        out = self.out(self.norm(q))
        return out, torch.full((b,), self.num_tokens, dtype=torch.long, device=sequence.device)


def build_projector(kind: str, in_dim: int, out_dim: int, num_tokens: int, *, level: str,
                    mlp_hidden: int | None = None, resampler_dim: int = 256, resampler_heads: int = 4,
                    resampler_layers: int = 1) -> nn.Module:
    """The projector of one source; ``level`` is ``sequence`` or ``feature`` (a single vector).

    ``resampler`` at feature level becomes the MLP expansion: cross-attention to one vector would return the
    same value for every query (the queries' own path would get no gradient).
    """
    if kind in ("linear", "mlp") or (kind == "resampler" and level == "feature"):
        kind = "mlp" if kind == "resampler" else kind
        return TokenMapper(in_dim, out_dim, num_tokens, expand=level == "feature", kind=kind, hidden=mlp_hidden)
    if kind == "resampler":
        return Resampler(in_dim, out_dim, num_tokens, dim=resampler_dim, heads=resampler_heads, layers=resampler_layers)
    raise ValueError(f"unknown projector {kind!r}; expected linear, mlp or resampler")
