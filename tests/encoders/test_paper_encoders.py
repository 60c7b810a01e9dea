"""The paper's encoders: r2plus1d (3-D CNN), stgcn (landmark graph), seq_transformer (word vectors).

Shapes, gradient flow, padding invariance, the normalised adjacency against numpy, the default face graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torchvision.models.video import r2plus1d_18

from contrastive_mer.data.kinds import preprocess_config
from contrastive_mer.encoders import build_encoder, encoder_names, get_entry
from contrastive_mer.encoders.graph import adjacency, face51_edges, normalized_adjacency
from contrastive_mer.encoders.sequence import sinusoidal_positions

SMALL_STGCN = {"hidden_channels": 8, "spatial_channels": 4, "node_dim": 3, "output_dim": 12}
SMALL_TRANSFORMER = {"input_dim": 7, "d_model": 12, "heads": 3, "layers": 2, "dim_feedforward": 16,
                     "output_dim": 10}


def assert_every_parameter_gets_gradient(enc: torch.nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_registered_with_input_kinds():
    assert {"r2plus1d", "stgcn", "seq_transformer"} <= set(encoder_names())
    assert get_entry("r2plus1d").input_kind == "frames"
    assert get_entry("stgcn").input_kind == "vector"
    assert get_entry("seq_transformer").input_kind == "vector"
    with pytest.raises(Exception, match="hiden"):
        build_encoder("stgcn", {"hiden_channels": 3})


# ---------------------------------------------------------------- r2plus1d


def test_r2plus1d_shape_gradients_and_frame_layout():
    torch.manual_seed(0)
    enc = build_encoder("r2plus1d", {"output_dim": 6})
    x = torch.randn(2, 2, 3, 16, 16)  # (B, T, 3, H, W), as the frames preprocessor gives
    out = enc(x)
    assert out.feature.shape == (2, 6) and out.sequence is None
    assert_every_parameter_gets_gradient(enc, out.feature.square().sum())
    enc.eval()
    with torch.no_grad():  # the trunk sees (B, 3, T, H, W)
        expected = enc.head(enc.backbone(x.permute(0, 2, 1, 3, 4)))
        torch.testing.assert_close(enc(x).feature, expected)


@torch.no_grad()
def test_r2plus1d_padded_frames_never_enter_the_network():
    enc = build_encoder("r2plus1d", {"output_dim": 5}).eval()
    x = torch.randn(3, 3, 3, 16, 16)
    out = enc(x, torch.tensor([3, 1, 2]))
    for row, n in enumerate([3, 1, 2]):
        alone = enc(x[row:row + 1, :n])
        torch.testing.assert_close(out.feature[row:row + 1], alone.feature, atol=1e-5, rtol=1e-5)


def test_r2plus1d_local_checkpoint(tmp_path):
    donor = r2plus1d_18(weights=None)
    state = {k: v for k, v in donor.state_dict().items() if k.startswith("stem.") or k.startswith("fc.")}
    torch.save(state, tmp_path / "r2p1d.pth")
    enc = build_encoder("r2plus1d", {"checkpoint_path": str(tmp_path / "r2p1d.pth"), "output_dim": 4})
    torch.testing.assert_close(enc.backbone.stem[0].weight, donor.stem[0].weight)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_encoder("r2plus1d", {"checkpoint_path": str(tmp_path / "missing.pth")})


def test_r2plus1d_rejects_wrong_layout():
    enc = build_encoder("r2plus1d", {"output_dim": 4})
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        enc(torch.randn(1, 3, 4, 16, 16))


# ---------------------------------------------------------------- stgcn


def numpy_normalized_adjacency(edges: list[list[int]], n: int, w: float = 1.0) -> np.ndarray:
    a = np.zeros((n, n))
    for i, j in edges:
        a[i, j] = a[j, i] = 1.0
    a = a + w * np.eye(n)
    d = np.diag(1.0 / np.sqrt(a.sum(axis=1)))
    return d @ a @ d


@pytest.mark.parametrize("weight", [1.0, 2.0])
def test_normalized_adjacency_matches_numpy(weight):
    edges = face51_edges()
    got = normalized_adjacency(edges, 51, weight).double().numpy()
    np.testing.assert_allclose(got, numpy_normalized_adjacency(edges, 51, weight), rtol=1e-6, atol=1e-7)
    small = [[0, 1], [1, 2], [2, 0], [2, 3], [3, 3]]  # a self loop in the list changes nothing
    np.testing.assert_allclose(normalized_adjacency(small, 5).numpy(),
                               numpy_normalized_adjacency(small[:4], 5), rtol=1e-6, atol=1e-7)


def test_default_face_graph_is_51_nodes_symmetric_and_connected():
    edges = face51_edges()
    a = adjacency(edges, 51).numpy()
    assert a.shape == (51, 51) and (a == a.T).all() and np.diag(a).sum() == 0
    assert len({tuple(sorted(e)) for e in edges}) == len(edges)  # no duplicate edges
    assert all(0 <= v < 51 for e in edges for v in e)
    seen, frontier = {0}, [0]
    while frontier:
        node = frontier.pop()
        for nxt in np.nonzero(a[node])[0].tolist():
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(range(51))
    # eye and lip loops: every node of a loop has degree >= 2 inside its own region
    for start, stop in [(19, 25), (25, 31), (31, 43), (43, 51)]:
        region = a[start:stop, start:stop]
        assert (region.sum(1) >= 2).all()


def test_stgcn_shapes_gradients_and_flat_input():
    torch.manual_seed(0)
    enc = build_encoder("stgcn", SMALL_STGCN)
    x = torch.randn(3, 9, 51, 2)
    out = enc(x, torch.tensor([9, 5, 7]))
    assert out.feature.shape == (3, 12) and out.sequence.shape == (3, 9, 12)
    assert out.sequence_lengths.tolist() == [9, 5, 7]
    assert_every_parameter_gets_gradient(enc, out.feature.square().sum())
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x).feature, enc(x.reshape(3, 9, 102)).feature)


@pytest.mark.parametrize("gate", ["glu", "sum"])
@torch.no_grad()
def test_stgcn_is_invariant_to_padding(gate):
    enc = build_encoder("stgcn", {**SMALL_STGCN, "temporal_gate": gate}).eval()
    x = torch.randn(1, 11, 51, 2)
    alone = enc(x)
    padded = enc(torch.cat([x, torch.full((1, 6, 51, 2), 5.0)], 1), torch.tensor([11]))
    torch.testing.assert_close(alone.feature, padded.feature, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone.sequence, padded.sequence[:, :11], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_stgcn_custom_graph_and_errors():
    enc = build_encoder("stgcn", {**SMALL_STGCN, "num_nodes": 4, "in_channels": 3,
                                  "edges": [[0, 1], [1, 2], [2, 3]]}).eval()
    assert enc(torch.randn(2, 5, 4, 3)).feature.shape == (2, 12)
    with pytest.raises(ValueError, match=r"\(B, T, 4, 3\)"):
        enc(torch.randn(2, 5, 51, 2))
    with pytest.raises(ValueError, match=r"edges\[1\]"):
        build_encoder("stgcn", {"num_nodes": 3, "edges": [[0, 1], [1, 3]]})
    with pytest.raises(ValueError, match="no edges"):
        build_encoder("stgcn", {"num_nodes": 10})
    with pytest.raises(ValueError, match="self_loop_weight"):
        build_encoder("stgcn", {"self_loop_weight": -1.0})
    with pytest.raises(ValueError, match="temporal_gate"):
        build_encoder("stgcn", {"temporal_gate": "gru"})


def test_stgcn_feeds_from_frame_vector_preprocessing():
    mod = OmegaConf.create({"encoder": "stgcn", "encoder_args": {}, "preprocess": {"sequence": True}})
    cfg = preprocess_config(mod, "vector")
    assert cfg.input_dim == 102 and cfg.sequence


# ---------------------------------------------------------------- seq_transformer


def test_sinusoidal_positions_match_formula():
    table = sinusoidal_positions(7, 6).numpy()
    t = np.arange(7)[:, None]
    i = np.arange(3)[None, :]
    np.testing.assert_allclose(table[:, 0::2], np.sin(t / 10000 ** (2 * i / 6)), atol=1e-6)
    np.testing.assert_allclose(table[:, 1::2], np.cos(t / 10000 ** (2 * i / 6)), atol=1e-6)


def test_seq_transformer_shapes_and_gradients():
    torch.manual_seed(0)
    enc = build_encoder("seq_transformer", SMALL_TRANSFORMER)
    out = enc(torch.randn(3, 8, 7), torch.tensor([8, 3, 5]))
    assert out.feature.shape == (3, 10) and out.sequence.shape == (3, 8, 10)
    assert_every_parameter_gets_gradient(enc, out.feature.square().sum())


@torch.no_grad()
def test_seq_transformer_is_invariant_to_padding():
    enc = build_encoder("seq_transformer", SMALL_TRANSFORMER).eval()
    x = torch.randn(2, 6, 7)
    alone = [enc(x[:1]).feature, enc(x[1:, :4]).feature]
    padded = x.clone()
    padded[1, 4:] = 100.0  # garbage in the padded steps
    out = enc(padded, torch.tensor([6, 4]))
    torch.testing.assert_close(out.feature, torch.cat(alone), atol=1e-5, rtol=1e-5)


def test_seq_transformer_defaults_are_the_papers_and_checks_input():
    enc = build_encoder("seq_transformer", {"layers": 1})
    assert isinstance(enc.input_proj, torch.nn.Identity) and enc.d_model == 300
    assert enc.transformer.layers[0].self_attn.num_heads == 5
    with pytest.raises(ValueError, match=r"\(B, T, 300\)"):
        enc(torch.randn(2, 3, 299))
    with pytest.raises(ValueError, match="divisible"):
        build_encoder("seq_transformer", {"d_model": 10, "heads": 3})


def test_seq_transformer_padding_mask_used_in_training_mode_too():
    """Dropout off, train mode: still padding invariant (the mask, not eval-only fast paths, does it)."""
    enc = build_encoder("seq_transformer", {**SMALL_TRANSFORMER, "dropout": 0.0}).train()
    x = torch.randn(1, 5, 7)
    padded = F.pad(x, (0, 0, 0, 3), value=-9.0)
    torch.testing.assert_close(enc(x).feature, enc(padded, torch.tensor([5])).feature, atol=1e-5, rtol=1e-5)


def test_official_face_graph_has_the_65_edges_of_config_adj_npy():
    from contrastive_mer.encoders.graph import OFFICIAL_FACE_EDGES, official65_edges

    edges = official65_edges()
    assert edges == [list(e) for e in OFFICIAL_FACE_EDGES] and len(edges) == 65
    assert all(a < b for a, b in edges) and len(set(OFFICIAL_FACE_EDGES)) == 65
    a = adjacency(edges, 51).numpy()
    # config/adj.npy: symmetric 51 x 51 0/1, empty diagonal, sum 130 (65 undirected edges)
    assert (a == a.T).all() and np.diag(a).sum() == 0 and a.sum() == 130 and set(np.unique(a)) == {0.0, 1.0}
    assert {tuple(map(int, p)) for p in np.argwhere(np.triu(a, 1))} == set(OFFICIAL_FACE_EDGES)
    shared = {tuple(sorted(e)) for e in face51_edges()} & set(OFFICIAL_FACE_EDGES)
    assert len(face51_edges()) == 62 and len(shared) == 53
    enc = build_encoder("stgcn", {**SMALL_STGCN, "graph": "official65", "self_loop_weight": 2.0})
    # the official normalisation: Encoder.py adds I once, get_normalized_adj again -> D^-1/2 (A + 2I) D^-1/2
    np.testing.assert_allclose(enc.a_hat.numpy(), numpy_normalized_adjacency(edges, 51, 2.0), rtol=1e-6, atol=1e-7)
    default = build_encoder("stgcn", SMALL_STGCN)
    np.testing.assert_allclose(default.a_hat.numpy(), numpy_normalized_adjacency(face51_edges(), 51), rtol=1e-6,
                               atol=1e-7)
    with pytest.raises(ValueError, match="graph"):
        build_encoder("stgcn", {**SMALL_STGCN, "graph": "face68"})
    with pytest.raises(ValueError, match="not both"):
        build_encoder("stgcn", {**SMALL_STGCN, "graph": "official65", "edges": [[0, 1]]})


def test_batch_slot_positions_are_constant_over_time_and_vary_over_the_batch():
    enc = build_encoder("seq_transformer", {**SMALL_TRANSFORMER, "positions": "batch_slot"})
    table = enc.position_table(4, 9)
    assert table.shape == (4, 1, 12)  # broadcast over the 9 steps: constant over time
    torch.testing.assert_close(table[:, 0], sinusoidal_positions(4, 12))  # row b gets position b
    assert not torch.allclose(table[0], table[1])
    timed = build_encoder("seq_transformer", SMALL_TRANSFORMER).position_table(4, 9)
    assert timed.shape == (9, 12)  # the same for every clip, varying over time
    with pytest.raises(ValueError, match="positions"):
        build_encoder("seq_transformer", {**SMALL_TRANSFORMER, "positions": "learned"})


@torch.no_grad()
def test_batch_slot_positions_make_a_clip_depend_on_its_slot_not_on_step_order():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 7)
    swap, reverse = torch.tensor([1, 0, 2]), torch.arange(5, -1, -1)
    slot = build_encoder("seq_transformer", {**SMALL_TRANSFORMER, "positions": "batch_slot"}).eval()
    timed = build_encoder("seq_transformer", SMALL_TRANSFORMER).eval()
    timed.load_state_dict(slot.state_dict())
    # batch_slot: no temporal positions, so reversing the steps leaves the mean-pooled feature unchanged ...
    torch.testing.assert_close(slot(x[:, reverse]).feature, slot(x).feature, atol=1e-5, rtol=1e-5)
    # ... and a clip's feature changes with its slot in the batch
    assert not torch.allclose(slot(x[swap]).feature, slot(x).feature[swap], atol=1e-4)
    # time positions: the reverse of the above
    assert not torch.allclose(timed(x[:, reverse]).feature, timed(x).feature, atol=1e-4)
    torch.testing.assert_close(timed(x[swap]).feature, timed(x).feature[swap], atol=1e-5, rtol=1e-5)
