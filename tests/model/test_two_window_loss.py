"""The official code's two-window loss against a hand-written per-anchor reference (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastive_mer.model.losses import two_window_pairwise_loss, two_window_supcon


def naive_two_window(za: torch.Tensor, zb: torch.Tensor, tau: float, labels: list[int] | None = None,
                     count_offset: float = 0.0) -> torch.Tensor:
    """One anchor at a time, with explicit candidate and positive lists (autograd through plain ops)."""
    batch = za.shape[0]
    losses = []
    for w in range(2):
        for i in range(batch):
            anchor = za[i, w]
            candidates = [(j, v) for j in range(batch) for v in range(2) if not (j == i and v == w)]
            assert len(candidates) == 2 * batch - 1
            scores = {c: torch.dot(anchor, zb[c[0], c[1]]) / tau for c in candidates}
            log_denominator = torch.log(sum(torch.exp(s) for s in scores.values()))
            if labels is None:
                positives = [(i, 1 - w)]
            else:
                positives = [(j, v) for (j, v) in candidates if labels[j] == labels[i]]
            total = sum(scores[p] - log_denominator for p in positives)
            losses.append(-total / (len(positives) + count_offset))
    return torch.stack(losses).mean()


def unit(batch: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(batch, 2, dim, generator=gen, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("batch", [2, 3, 8])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("supervised", [False, True])
@pytest.mark.parametrize("count_offset", [0.0, 1.0])
def test_matches_naive_reference_values_and_gradients(batch, tau, supervised, count_offset):
    za = unit(batch, 5, 1).requires_grad_()
    zb = unit(batch, 5, 2).requires_grad_()
    labels = [k % 2 for k in range(batch)] if supervised else None
    got = two_window_supcon(za, zb, tau, torch.tensor(labels) if supervised else None, count_offset=count_offset)
    ga, gb = torch.autograd.grad(got, (za, zb))
    ref = naive_two_window(za, zb, tau, labels, count_offset)
    ra, rb = torch.autograd.grad(ref, (za, zb))
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ga, ra, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gb, rb, rtol=1e-9, atol=1e-10)


def test_label_free_form_is_cross_entropy_over_2b_minus_1_candidates():
    """With one positive per anchor the loss is a cross-entropy whose target is the other window."""
    batch, tau = 4, 0.1
    za, zb = unit(batch, 6, 3), unit(batch, 6, 4)
    anchors, keys = za.transpose(0, 1).reshape(8, -1), zb.transpose(0, 1).reshape(8, -1)
    logits = anchors @ keys.t() / tau
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(batch) + batch, torch.arange(batch)])
    torch.testing.assert_close(two_window_supcon(za, zb, tau), F.cross_entropy(logits, target))
    # the official `+ 1` in the denominator halves it
    torch.testing.assert_close(two_window_supcon(za, zb, tau, count_offset=1.0), F.cross_entropy(logits, target) / 2)


def test_all_distinct_labels_equal_the_label_free_loss():
    za, zb = unit(5, 4, 5), unit(5, 4, 6)
    torch.testing.assert_close(two_window_supcon(za, zb, 0.2, torch.arange(5)), two_window_supcon(za, zb, 0.2))


def test_perfect_alignment_gives_low_loss_and_shuffled_gives_high():
    za = unit(16, 32, 7)
    aligned = two_window_supcon(za, za.flip(1), 0.05)  # b's other window is exactly a's window
    shuffled = two_window_supcon(za, za[torch.randperm(16, generator=torch.Generator().manual_seed(0))], 0.05)
    assert aligned.item() < 0.05 < math.log(31) / 2 < shuffled.item()
    out = two_window_pairwise_loss({"a": za, "b": za.flip(1)}, temperature=0.05)
    assert out.accuracy["a-b"].item() == 1.0 and out.accuracy["b-a"].item() == 1.0


def test_pairwise_mean_over_ordered_pairs_and_presence():
    batch = 6
    emb = {"audio": unit(batch, 4, 8), "video": unit(batch, 4, 9), "text": unit(batch, 4, 10)}
    present = {m: torch.ones(batch, dtype=torch.bool) for m in emb}
    present["text"][[0, 3]] = False
    out = two_window_pairwise_loss(emb, present, temperature=0.3)
    keep = torch.tensor([1, 2, 4, 5])
    expected = {}
    for a in emb:
        for b in emb:
            if a == b:
                continue
            rows = keep if "text" in (a, b) else torch.arange(batch)
            expected[f"{a}-{b}"] = naive_two_window(emb[a][rows], emb[b][rows], 0.3)
    assert set(out.per_pair) == set(expected)
    assert out.count["audio-text"] == 4 and out.count["audio-video"] == 6
    for name, value in expected.items():
        torch.testing.assert_close(out.per_pair[name], value)
    torch.testing.assert_close(out.loss, torch.stack(list(expected.values())).mean())


def test_pairwise_with_labels_selects_the_present_rows_labels():
    batch = 5
    emb = {"audio": unit(batch, 4, 11), "video": unit(batch, 4, 12)}
    present = {"audio": torch.tensor([True, True, False, True, True]), "video": torch.ones(batch, dtype=torch.bool)}
    labels = torch.tensor([0, 1, 0, 1, 0])
    out = two_window_pairwise_loss(emb, present, temperature=0.5, labels=labels)
    rows = torch.tensor([0, 1, 3, 4])
    ref = naive_two_window(emb["audio"][rows], emb["video"][rows], 0.5, [0, 1, 1, 0])
    torch.testing.assert_close(out.per_pair["audio-video"], ref)


def test_pairwise_without_enough_rows_is_zero_with_gradients():
    za = unit(3, 4, 13).float().requires_grad_()
    zb = unit(3, 4, 14).float().requires_grad_()
    present = {"a": torch.tensor([True, False, False]), "b": torch.ones(3, dtype=torch.bool)}
    out = two_window_pairwise_loss({"a": za, "b": zb}, present)
    assert out.loss.item() == 0.0 and not out.per_pair
    out.loss.backward()
    assert za.grad is not None and torch.count_nonzero(za.grad) == 0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(B, 2, P\)"):
        two_window_supcon(torch.randn(4, 3, 2), torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="labels"):
        two_window_supcon(unit(4, 3, 0), unit(4, 3, 1), labels=torch.arange(3))


def test_official_count_offset_halves_the_label_free_loss_exactly():
    """Without labels every anchor has exactly one positive (the other window of its clip), so the official
    denominator ``n_pos + 1 = 2`` against SupCon's ``n_pos = 1`` halves every anchor's term: exactly 1/2."""
    za, zb = unit(6, 8, 3), unit(6, 8, 4)
    default, official = two_window_supcon(za, zb, 0.07), two_window_supcon(za, zb, 0.07, count_offset=1.0)
    torch.testing.assert_close(official, default / 2, rtol=1e-12, atol=0)
    emb = {"audio": za, "landmarks": zb}
    torch.testing.assert_close(two_window_pairwise_loss(emb, count_offset=1.0).loss,
                               two_window_pairwise_loss(emb).loss / 2, rtol=1e-12, atol=0)


def test_official_count_offset_with_labels_scales_by_n_over_n_plus_one():
    """With labels an anchor of a class of k clips has 2k - 1 positives, so its term scales by (2k-1)/(2k), not
    1/2. Every class of 2 clips here: 3 positives per anchor, exactly 3/4 of the default loss."""
    za, zb = unit(6, 8, 5), unit(6, 8, 6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    default = two_window_supcon(za, zb, 0.07, labels)
    official = two_window_supcon(za, zb, 0.07, labels, count_offset=1.0)
    torch.testing.assert_close(official, default * 3 / 4, rtol=1e-12, atol=0)
    assert not torch.isclose(official, default / 2)


def test_official_anchor_rule_never_anchors_the_last_modality():
    from contrastive_mer.model.losses import TwoWindowLoss

    torch.manual_seed(0)
    mods = ["audio", "landmarks", "text"]
    rows = {m: F.normalize(torch.randn(8, 6, dtype=torch.float64), dim=-1).requires_grad_() for m in mods}
    present = {m: torch.ones(8, dtype=torch.bool) for m in mods}
    labels = {"emotion": torch.tensor([0, 1, 0, 2, 0, 1, 0, 2])}
    loss = TwoWindowLoss(mods, label="emotion", anchor_rule="official", count_offset=1.0)
    out = loss(rows, present, labels)
    assert set(out.per_pair) == {"audio-landmarks", "landmarks-audio", "audio-text", "landmarks-text"}
    views = {m: torch.stack([z[:4], z[4:]], 1) for m, z in rows.items()}
    want = torch.stack([two_window_supcon(views[a], views[b], 0.07, labels["emotion"][:4], count_offset=1.0)
                        for a, b in (("audio", "landmarks"), ("landmarks", "audio"), ("audio", "text"),
                                     ("landmarks", "text"))]).mean()
    torch.testing.assert_close(out.loss, want)
    # RAVDESS (audio, landmarks): only audio -> landmarks is scored
    two = TwoWindowLoss(mods[:2], label="emotion", anchor_rule="official")
    assert set(two({m: rows[m] for m in mods[:2]}, present, labels).per_pair) == {"audio-landmarks"}
    assert set(TwoWindowLoss(mods[:2], label="emotion")(
        {m: rows[m] for m in mods[:2]}, present, labels).per_pair) == {"audio-landmarks", "landmarks-audio"}
    with pytest.raises(ValueError, match="anchor_rule"):
        TwoWindowLoss(mods, anchor_rule="first")
