"""Spatio-temporal graph convolutional network over facial landmarks (Yu et al., IJCAI 2018), the paper's
landmark encoder.

Input: ``(B, T, N, C)`` landmark sequences (N nodes with C coordinates per frame; the paper: 51 face points x 2)
or the same flattened node-major to ``(B, T, N * C)`` (``x0, y0, x1, y1, ...``), so a landmark modality can be fed
as a frame-vector sequence. ``lengths`` gives the valid frames per clip.

Each block: gated temporal convolution -> graph convolution with the symmetric-normalised adjacency
``D^-1/2 (A + w I) D^-1/2`` -> ReLU -> gated temporal convolution -> layer norm over channels. After the blocks, a
last gated temporal convolution, dropout, a per-node linear layer and a global linear layer over all nodes give a
per-frame ``(B, T, output_dim)`` sequence, mean-pooled over valid frames. Temporal convolutions are 'same'-padded
and padded frames are zeroed after every step, so a clip's output does not depend on the padding after it.

Departures from the official code (on purpose, see ``docs/paper.md``): the official per-node layer flattens a
fixed number of frames (``(T - 10) * 64 -> 512``) and the global layer maps ``51 * 512 -> 512``; here the per-node
layer acts per frame and the result is pooled over time, so clips of any length work. The official gate is
``relu(P + sigmoid(Q) + R)`` (``temporal_gate: sum``); Yu et al.'s is ``P * sigmoid(Q)`` (``glu``, the default).
The official graph is ``config/adj.npy`` (65 edges, ``graph: official65``); the default ``face51`` graph is built
from the 68-point anatomy (62 edges, 53 of them shared with the official one).
The official code adds the identity twice before normalising (``self_loop_weight: 2`` reproduces it), and
normalises with batch norm over nodes (layer norm here, as Yu et al., which keeps padding out of the statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder, length_mask, masked_mean
from contrastive_mer.encoders.registry import register_encoder

#: 68-point (iBUG / OpenFace) landmark regions, 0-based
JAW = range(0, 17)
RIGHT_BROW, LEFT_BROW = range(17, 22), range(22, 27)
NOSE_BRIDGE, NOSTRILS = range(27, 31), range(31, 36)
RIGHT_EYE, LEFT_EYE = range(36, 42), range(42, 48)
OUTER_LIPS, INNER_LIPS = range(48, 60), range(60, 68)

# links between regions, in 68-point numbering: inner brow ends together and to the top of the nose; brow middles
# to the upper eyelids; inner eye corners to the nose bridge; nose tip to the columella; the columella and the
# nose wings to the upper lip and the mouth corners; outer to inner lips at the corners and the middles
_CROSS_LINKS_68 = [(21, 22), (21, 27), (22, 27), (19, 37), (24, 44), (39, 27), (42, 27), (30, 33),
                   (33, 51), (31, 48), (35, 54), (48, 60), (54, 64), (51, 62), (57, 66)]


def _chain(points: range) -> list[tuple[int, int]]:
    return [(a, a + 1) for a in points[:-1]]


def _loop(points: range) -> list[tuple[int, int]]:
    return _chain(points) + [(points[-1], points[0])]


def face51_edges() -> list[list[int]]:
    """The default face graph: 51 nodes (68-point landmarks minus the 17 jaw points, node = point - 17).

    Brow and nose chains, eye and lip loops (outer and inner), and a few cross-links between the regions.
    """
    edges = (_chain(RIGHT_BROW) + _chain(LEFT_BROW) + _chain(NOSE_BRIDGE) + _chain(NOSTRILS)
             + _loop(RIGHT_EYE) + _loop(LEFT_EYE) + _loop(OUTER_LIPS) + _loop(INNER_LIPS) + _CROSS_LINKS_68)
    return [[a - len(JAW), b - len(JAW)] for a, b in edges]


#: The official code's face graph: ``config/adj.npy`` of github.com/ricfrr/mpuc-mer (a symmetric 51 x 51 0/1
#: matrix with an empty diagonal, loaded by ``models/Encoder.py``, ``Encoder.__init__``), written out as its 65
#: undirected edges ``(i, j)``, ``i < j``, nodes numbered as here (68-point landmark index - 17). Read from the
#: matrix with numpy (``np.argwhere(np.triu(A, 1))``); a fact of the paper's setup, not code.
OFFICIAL_FACE_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 19), (1, 2), (2, 3), (3, 4), (4, 5), (5, 7), (6, 7), (6, 8), (8, 9), (9, 28), (10, 11),
    (10, 14), (10, 18), (10, 22), (10, 25), (11, 12), (12, 13), (13, 16), (14, 15), (15, 16), (16, 17),
    (16, 34), (17, 18), (19, 20), (19, 24), (19, 31), (20, 21), (21, 22), (22, 23), (23, 24), (25, 26),
    (25, 30), (26, 27), (27, 28), (28, 29), (28, 37), (29, 30), (31, 32), (31, 42), (31, 43), (32, 33),
    (33, 34), (33, 44), (34, 35), (34, 45), (35, 36), (35, 46), (36, 37), (37, 38), (37, 47), (38, 39),
    (39, 40), (40, 41), (41, 42), (43, 44), (43, 50), (44, 45), (44, 50), (45, 46), (46, 47), (46, 48),
    (47, 48), (48, 49), (49, 50),
)


def official65_edges() -> list[list[int]]:
    """The official code's 65-edge face graph (:data:`OFFICIAL_FACE_EDGES`), 51 nodes."""
    return [[a, b] for a, b in OFFICIAL_FACE_EDGES]


#: ``encoder_args.graph`` -> the 51-node face graph it names
FACE_GRAPHS = {"face51": face51_edges, "official65": official65_edges}


def adjacency(edges: Sequence[Sequence[int]], num_nodes: int) -> torch.Tensor:
    """Symmetric 0/1 adjacency ``(N, N)`` of an undirected edge list; raises naming a bad edge."""
    adj = torch.zeros(num_nodes, num_nodes)
    for k, edge in enumerate(edges):
        if len(edge) != 2 or not all(0 <= int(v) < num_nodes for v in edge):
            raise ValueError(f"stgcn.edges[{k}] = {list(edge)}: expected two node indices in [0, {num_nodes})")
        i, j = int(edge[0]), int(edge[1])
        if i != j:
            adj[i, j] = adj[j, i] = 1.0
    return adj


def normalized_adjacency(edges: Sequence[Sequence[int]], num_nodes: int,
                         self_loop_weight: float = 1.0) -> torch.Tensor:
    """``D^-1/2 (A + w I) D^-1/2`` with ``D`` the degrees of ``A + w I`` (Kipf & Welling; Yu et al.)."""
    if self_loop_weight < 0:
        raise ValueError(f"stgcn.self_loop_weight must be >= 0, got {self_loop_weight}")
    a = adjacency(edges, num_nodes) + self_loop_weight * torch.eye(num_nodes)
    inv_sqrt = a.sum(1).clamp(min=1e-12).rsqrt()
    return inv_sqrt.unsqueeze(1) * a * inv_sqrt.unsqueeze(0)


class GatedTemporalConv(nn.Module):
    """Temporal convolution applied to every node alone, on ``(B, C, T, N)``; 'same' padding, odd kernel.

    ``glu``: ``P * sigmoid(Q)`` (Yu et al.); ``sum``: ``relu(P + sigmoid(Q) + R)`` (the official code).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gate: str):
        super().__init__()
        parts = {"glu": 2, "sum": 3}
        if gate not in parts:
            raise ValueError(f"stgcn.temporal_gate must be 'glu' or 'sum', got {gate!r}")
        self.gate = gate
        self.conv = nn.Conv2d(in_channels, parts[gate] * out_channels, (kernel_size, 1),
                              padding=(kernel_size // 2, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate == "glu":
            p, q = self.conv(x).chunk(2, dim=1)
            return p * torch.sigmoid(q)
        p, q, r = self.conv(x).chunk(3, dim=1)
        return torch.relu(p + torch.sigmoid(q) + r)


class STGCNBlock(nn.Module):
    """Gated temporal conv -> graph conv (``A_hat`` over nodes, ``Theta`` over channels) -> ReLU -> gated temporal
    conv -> layer norm over channels; padded frames zeroed after each step."""

    def __init__(self, in_channels: int, out_channels: int, spatial_channels: int, kernel_size: int, *, gate: str):
        super().__init__()
        self.temporal1 = GatedTemporalConv(in_channels, out_channels, kernel_size, gate)
        self.theta = nn.Linear(out_channels, spatial_channels, bias=False)
        self.temporal2 = GatedTemporalConv(spatial_channels, out_channels, kernel_size, gate)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor, a_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.temporal1(x) * mask  # (B, C, T, N)
        h = torch.einsum("ij,bctj->btic", a_hat, h)  # graph conv over nodes -> (B, T, N, C)
        h = torch.relu(self.theta(h)).permute(0, 3, 1, 2)  # (B, S, T, N)
        h = self.temporal2(h) * mask
        return self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) * mask


@dataclass
class STGCNConfig:
    num_nodes: int = 51
    in_channels: int = 2
    # the 51-node face graph when edges is None: face51 (face51_edges, the default) or official65 (the official
    # code's config/adj.npy, OFFICIAL_FACE_EDGES)
    graph: str = "face51"
    edges: list[list[int]] | None = None  # an explicit edge list instead of graph
    self_loop_weight: float = 1.0
    hidden_channels: int = 64
    spatial_channels: int = 16
    blocks: int = 2
    kernel_size: int = 3
    temporal_gate: str = "glu"
    node_dim: int = 64
    dropout: float = 0.1
    output_dim: int = 512

    @property
    def input_dim(self) -> int:
        """Width of one flattened frame (``num_nodes * in_channels``), for frame-vector preprocessing."""
        return self.num_nodes * self.in_channels


@register_encoder("stgcn", STGCNConfig, input_kind="vector")
class STGCNEncoder(ModalityEncoder):
    """ST-GCN blocks -> last gated temporal conv -> dropout -> per-node Linear -> global Linear -> mean over time."""

    def __init__(self, cfg: STGCNConfig):
        super().__init__()
        if cfg.kernel_size % 2 == 0:
            raise ValueError(f"stgcn.kernel_size must be odd, got {cfg.kernel_size}")
        if cfg.graph not in FACE_GRAPHS:
            raise ValueError(f"stgcn.graph must be one of {', '.join(FACE_GRAPHS)}, got {cfg.graph!r}")
        if cfg.edges is not None and cfg.graph != "face51":
            raise ValueError(f"stgcn: give either edges or graph ({cfg.graph!r}), not both")
        edges = FACE_GRAPHS[cfg.graph]() if cfg.edges is None else cfg.edges
        if cfg.edges is None and cfg.num_nodes != 51:
            raise ValueError(f"stgcn.num_nodes is {cfg.num_nodes} but no edges are given (the face graphs "
                             "have 51 nodes)")
        self.register_buffer("a_hat", normalized_adjacency(edges, cfg.num_nodes, cfg.self_loop_weight))
        widths = [cfg.in_channels] + [cfg.hidden_channels] * cfg.blocks
        self.blocks = nn.ModuleList(
            STGCNBlock(widths[k], widths[k + 1], cfg.spatial_channels, cfg.kernel_size, gate=cfg.temporal_gate)
            for k in range(cfg.blocks))
        self.last_temporal = GatedTemporalConv(widths[-1], cfg.hidden_channels, cfg.kernel_size, cfg.temporal_gate)
        self.dropout = nn.Dropout(cfg.dropout)
        self.node_linear = nn.Linear(cfg.hidden_channels, cfg.node_dim)
        self.global_linear = nn.Linear(cfg.num_nodes * cfg.node_dim, cfg.output_dim)
        self.num_nodes, self.in_channels = cfg.num_nodes, cfg.in_channels
        self.output_dim = cfg.output_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        nodes, chans = self.num_nodes, self.in_channels
        if x.dim() == 3 and x.shape[-1] == nodes * chans:
            x = x.reshape(x.shape[0], x.shape[1], nodes, chans)
        if x.dim() != 4 or x.shape[2:] != (nodes, chans):
            raise ValueError(f"stgcn expects landmarks (B, T, {nodes}, {chans}) or (B, T, {nodes * chans}), "
                             f"got shape {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        valid = length_mask(lengths, steps, batch, x.device)  # (B, T)
        mask = valid.to(x.dtype)[:, None, :, None]  # (B, 1, T, 1)
        h = x.permute(0, 3, 1, 2) * mask  # (B, C, T, N)
        for block in self.blocks:
            h = block(h, self.a_hat, mask)
        h = self.dropout(self.last_temporal(h) * mask)
        per_node = self.node_linear(h.permute(0, 2, 3, 1))  # (B, T, N, node_dim)
        seq = self.global_linear(per_node.flatten(2))  # (B, T, D)
        return EncoderOutput(masked_mean(seq, valid), seq, valid.sum(1))
