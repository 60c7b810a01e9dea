"""The pairwise InfoNCE loss against a naive per-pair reference written here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrastive_mer.model.losses import PairwiseInfoNCE, pairwise_infonce, parse_pairs

NAMES = ["audio", "video", "text", "au"]


def naive_loss(raw: dict[str, torch.Tensor], present: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
    """Normalise inside every pair, index the valid rows, two cross-entropies per pair, mean over pairs."""
    losses = []
    for a, b in itertools.combinations(list(raw), 2):
        valid = present[a] & present[b]
        if int(valid.sum()) < 2:
            continue
        za = F.normalize(raw[a][valid], dim=-1)
        zb = F.normalize(raw[b][valid], dim=-1)
        logits = za @ zb.t() / temperature
        target = torch.arange(za.shape[0])
        losses.append((F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2)
    if not losses:
        return sum(z.sum() * 0 for z in raw.values())
    return torch.stack(losses).mean()


def make_inputs(n_mod: int, batch: int, mask_kind: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    names = NAMES[:n_mod]
    raw = {m: torch.randn(batch, 8, generator=gen, dtype=torch.float64, requires_grad=True) for m in names}
    if mask_kind == "none":
        present = {m: torch.ones(batch, dtype=torch.bool) for m in names}
    elif mask_kind == "random":
        present = {m: torch.rand(batch, generator=gen) > 0.3 for m in names}
    else:  # the last modality is absent from the whole batch
        present = {m: torch.ones(batch, dtype=torch.bool) for m in names}
        present[names[-1]] = torch.zeros(batch, dtype=torch.bool)
    return names, raw, present


@pytest.mark.parametrize("n_mod", [2, 3, 4])
@pytest.mark.parametrize("batch", [2, 5, 16])
@pytest.mark.parametrize("mask_kind", ["none", "random", "absent"])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_matches_naive_reference_values_and_gradients(n_mod, batch, mask_kind, temperature):
    names, raw, present = make_inputs(n_mod, batch, mask_kind, seed=n_mod * 100 + batch)
    ref = naive_loss(raw, present, temperature)
    ref_grads = torch.autograd.grad(ref, list(raw.values()), allow_unused=True)

    loss_fn = PairwiseInfoNCE(names, temperature=temperature).double()
    normalised = {m: F.normalize(x, dim=-1) for m, x in raw.items()}
    out = loss_fn(normalised, present)
    grads = torch.autograd.grad(out.loss, list(raw.values()), allow_unused=True)

    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        g = torch.zeros_like(raw[names[0]]) if g is None else g
        r = torch.zeros_like(raw[names[0]]) if r is None else r
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_random_embeddings_give_about_log_batch():
    batch = 64
    gen = torch.Generator().manual_seed(1)
    z = {m: F.normalize(torch.randn(batch, 1024, generator=gen), dim=-1) for m in NAMES[:3]}
    present = {m: torch.ones(batch, dtype=torch.bool) for m in z}
    out = PairwiseInfoNCE(list(z), temperature=1.0)(z, present)
    assert abs(out.loss.item() - math.log(batch)) < 0.05


def test_identical_well_separated_embeddings_give_near_zero():
    batch = 16
    z = torch.eye(batch, 32)
    emb = {m: z.clone() for m in NAMES[:3]}
    present = {m: torch.ones(batch, dtype=torch.bool) for m in emb}
    out = PairwiseInfoNCE(list(emb), temperature=0.07)(emb, present)
    assert out.loss.item() < 1e-4
    assert all(acc.item() == 1.0 for acc in out.accuracy.values())


def test_modality_absent_from_whole_batch_is_not_nan_and_other_pairs_count():
    names, raw, present = make_inputs(3, 8, "absent")
    z = {m: F.normalize(x, dim=-1) for m, x in raw.items()}
    out = PairwiseInfoNCE(names)(z, present)
    assert torch.isfinite(out.loss)
    assert set(out.per_pair) == {"audio-video"}
    assert out.count["audio-text"] == 0
    out.loss.backward()
    assert raw["text"].grad is None or torch.all(raw["text"].grad == 0)


def test_no_valid_pair_gives_zero_loss_and_finite_gradients():
    names, raw, _ = make_inputs(2, 4, "none")
    present = {"audio": torch.tensor([True, False, False, False]), "video": torch.tensor([True, True, False, False])}
    z = {m: F.normalize(x, dim=-1) for m, x in raw.items()}
    out = PairwiseInfoNCE(names)(z, present)
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert torch.all(raw["audio"].grad == 0)


def test_accuracy_counts_top1_in_both_directions():
    a = torch.eye(4)
    b = torch.eye(4)[[0, 1, 3, 2]]  # rows 2 and 3 swapped: half correct in each direction
    present = {"audio": torch.ones(4, dtype=torch.bool), "video": torch.ones(4, dtype=torch.bool)}
    out = PairwiseInfoNCE(["audio", "video"])({"audio": a, "video": b}, present)
    assert out.accuracy["audio-video"].item() == pytest.approx(0.5)


def test_learnable_temperature_stays_clamped():
    loss_fn = PairwiseInfoNCE(["audio", "video", "text"], temperature=0.07, learnable_temperature=True,
                              max_logit_scale=100.0)
    assert set(loss_fn.temperatures()) == {"audio-video", "audio-text", "video-text"}
    gen = torch.Generator().manual_seed(0)
    # aligned but crowded (2-d): the loss keeps falling as the scale grows, so training pushes on the clamp
    base = F.normalize(torch.randn(16, 2, generator=gen), dim=-1)
    emb = {m: base for m in ["audio", "video", "text"]}
    present = {m: torch.ones(16, dtype=torch.bool) for m in emb}
    opt = torch.optim.SGD(loss_fn.parameters(), lr=50.0)
    for _ in range(50):
        opt.zero_grad()
        loss_fn(emb, present).loss.backward()
        opt.step()
        loss_fn.clamp_()
    scales = loss_fn.logit_scales()
    assert all(s.item() <= 100.0 + 1e-4 for s in scales.values())
    assert all(s.item() > 99.0 for s in scales.values())  # it did push against the clamp
    with torch.no_grad():
        loss_fn.log_scale.fill_(10.0)  # even an unclamped parameter is clamped in the forward pass
    assert all(s.item() <= 100.0 + 1e-4 for s in loss_fn.logit_scales().values())


def test_pairs_subset_and_bad_pair_names():
    assert parse_pairs(["audio-video"], ["audio", "video", "text"]) == [("audio", "video")]
    with pytest.raises(ValueError, match="audio-audio"):
        parse_pairs(["audio-audio"], ["audio", "video"])
    with pytest.raises(ValueError, match="audio-face"):
        parse_pairs(["audio-face"], ["audio", "video"])


def test_function_and_module_agree_with_per_pair_temperatures():
    names, raw, present = make_inputs(3, 6, "random", seed=3)
    z = {m: F.normalize(x, dim=-1).detach() for m, x in raw.items()}
    pairs = list(itertools.combinations(names, 2))
    scales = {f"{a}-{b}": s for (a, b), s in zip(pairs, [1.0, 5.0, 14.0])}
    out = pairwise_infonce(z, present, scales, pairs)
    expected = []
    for (a, b) in pairs:
        expected_pair = naive_loss({a: raw[a].detach(), b: raw[b].detach()}, present, 1.0 / scales[f"{a}-{b}"])
        if f"{a}-{b}" in out.per_pair:
            torch.testing.assert_close(out.per_pair[f"{a}-{b}"], expected_pair)
            expected.append(expected_pair)
    torch.testing.assert_close(out.loss, torch.stack(expected).mean())


def naive_variance_covariance(z: np.ndarray) -> tuple[float, float]:
    """VICReg's two terms written out with numpy loops: per-dimension std hinge and squared off-diagonal cov."""
    n, p = z.shape
    x = z * math.sqrt(p)
    std = [math.sqrt(np.var(x[:, j], ddof=1) + 1e-4) for j in range(p)]
    variance = float(np.mean([max(0.0, 1.0 - s) for s in std]))
    cov = np.cov(x, rowvar=False)
    off = sum(cov[i, j] ** 2 for i in range(p) for j in range(p) if i != j)
    return variance, off / p


def test_variance_covariance_matches_numpy_reference():
    from contrastive_mer.model.losses import variance_covariance

    z = F.normalize(torch.randn(12, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64), dim=-1)
    v, c = variance_covariance(z)
    ref_v, ref_c = naive_variance_covariance(z.numpy())
    assert float(v) == pytest.approx(ref_v, rel=1e-9)
    assert float(c) == pytest.approx(ref_c, rel=1e-9)
    collapsed = F.normalize(torch.ones(12, 6, dtype=torch.float64), dim=-1)  # every row the same: no variance
    assert float(variance_covariance(collapsed)[0]) == pytest.approx(1 - math.sqrt(1e-4))


def test_variance_covariance_terms_add_to_the_pairwise_loss_over_present_rows():
    from contrastive_mer.model.losses import variance_covariance

    names, raw, present = make_inputs(3, 10, "random", seed=4)
    emb = {m: F.normalize(raw[m], dim=-1) for m in names}
    plain = PairwiseInfoNCE(names, 0.2)(emb, present).loss
    reg = PairwiseInfoNCE(names, 0.2, variance_weight=2.0, covariance_weight=0.5)(emb, present).loss
    terms = [variance_covariance(emb[m][present[m]]) for m in names]
    expected = plain + sum(2.0 * v + 0.5 * c for v, c in terms) / 3
    assert float(reg.detach()) == pytest.approx(float(expected.detach()), rel=1e-9)
    reg.backward()
    assert all(raw[m].grad is not None and torch.isfinite(raw[m].grad).all() for m in names)


def test_variance_covariance_weights_are_checked_and_only_for_the_pairwise_loss():
    from contrastive_mer.config import ConfigError
    from contrastive_mer.experiment import config_from_dict, validate

    base = {"model": {"modalities": {"a": {"encoder": "mlp", "encoder_args": {"input_dim": 4, "output_dim": 4}},
                                     "b": {"encoder": "mlp", "encoder_args": {"input_dim": 4, "output_dim": 4}}}}}
    with pytest.raises(ConfigError, match="loss.covariance_weight"):
        validate(config_from_dict({**base, "loss": {"covariance_weight": -1.0}}))
    with pytest.raises(ConfigError, match="only for loss.name=pairwise_infonce"):
        validate(config_from_dict({**base, "loss": {"name": "two_window_supcon", "variance_weight": 1.0}}))
