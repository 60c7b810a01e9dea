"""kNN probe against a brute-force numpy kNN with the same voting."""

import numpy as np
import pytest

from contrastive_mer.evaluation.knn import KnnProbeConfig, knn_probe


def brute_force(X_train, y_train, X_test, k, temperature=None, task="multiclass", c=None):
    """Naive cosine kNN: full similarity matrix, argsort, exp(sim/T) (or uniform) weights."""
    a = X_train / np.linalg.norm(X_train, axis=1, keepdims=True)
    b = X_test / np.linalg.norm(X_test, axis=1, keepdims=True)
    sims = b.astype(np.float64) @ a.T.astype(np.float64)
    preds, scores = [], []
    for row in sims:
        nn = np.argsort(-row)[:k]
        w = np.exp(row[nn] / temperature) if temperature else np.ones(k)
        if task == "multiclass":
            s = np.zeros(c)
            for i, wi in zip(nn, w):
                s[y_train[i]] += wi
            s /= s.sum()
            preds.append(int(np.argmax(s)))
            scores.append(s)
        elif task == "multilabel":
            s = (w[:, None] * (y_train[nn] > 0)).sum(0) / w.sum()
            preds.append((s >= 0.5).astype(int))
            scores.append(s)
        else:
            preds.append((w * y_train[nn]).sum() / w.sum())
    return np.array(preds), (np.array(scores) if scores else None)


def data(n_train=400, n_test=150, d=24, c=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    ytr, yte = rng.integers(0, c, n_train), rng.integers(0, c, n_test)
    Xtr = (centres[ytr] + rng.normal(size=(n_train, d)) * 1.5).astype(np.float32)
    Xte = (centres[yte] + rng.normal(size=(n_test, d)) * 1.5).astype(np.float32)
    return Xtr, ytr, Xte, yte


@pytest.mark.parametrize("k,temperature", [(1, 0.07), (10, 0.07), (20, 0.5), (7, 0.01)])
def test_multiclass_matches_brute_force(k: int, temperature: float) -> None:
    Xtr, ytr, Xte, yte = data(seed=k)
    res = knn_probe(Xtr, ytr, Xte, yte, KnnProbeConfig(k=k, temperature=temperature), num_classes=5)
    ref_pred, ref_scores = brute_force(Xtr, ytr, Xte, k, temperature, c=5)
    np.testing.assert_array_equal(res.predictions, ref_pred)
    np.testing.assert_allclose(res.probabilities, ref_scores, atol=1e-4)
    assert res.metrics["accuracy"] == pytest.approx((ref_pred == yte).mean())
    assert 0.3 < res.metrics["accuracy"] < 1.0


def test_uniform_weighting_and_k_capped() -> None:
    Xtr, ytr, Xte, yte = data(n_train=30, seed=11)
    res = knn_probe(Xtr, ytr, Xte, yte, KnnProbeConfig(k=50, weighting="uniform"), num_classes=5)
    assert res.k == 30  # capped at the training set size: every training row votes equally
    ref_pred, ref_scores = brute_force(Xtr, ytr, Xte, 30, None, c=5)
    np.testing.assert_allclose(res.probabilities, ref_scores, atol=1e-6)
    np.testing.assert_array_equal(res.predictions, ref_pred)


def test_multilabel_and_regression_match_brute_force() -> None:
    Xtr, ytr, Xte, _ = data(seed=3)
    rng = np.random.default_rng(3)
    Ytr = (rng.random((len(Xtr), 4)) < 0.3 + 0.1 * ytr[:, None] / 5).astype(np.float32)
    ml = knn_probe(Xtr, Ytr, Xte, None, KnnProbeConfig(task="multilabel", k=15, temperature=0.1))
    ref_pred, ref_scores = brute_force(Xtr, Ytr, Xte, 15, 0.1, task="multilabel")
    np.testing.assert_allclose(ml.probabilities, ref_scores, atol=1e-4)
    np.testing.assert_array_equal(ml.predictions, ref_pred)
    ytr_reg = ytr.astype(np.float64) - 2 + rng.normal(size=len(ytr)) * 0.1
    reg = knn_probe(Xtr, ytr_reg, Xte, None, KnnProbeConfig(task="regression", k=8, temperature=0.2))
    ref_reg, _ = brute_force(Xtr, ytr_reg, Xte, 8, 0.2, task="regression")
    np.testing.assert_allclose(reg.predictions, ref_reg, atol=1e-4)
    assert reg.probabilities is None


def test_bad_input() -> None:
    Xtr, ytr, Xte, _ = data()
    with pytest.raises(ValueError, match="X_test has 3 features"):
        knn_probe(Xtr, ytr, Xte[:, :3])
    with pytest.raises(ValueError, match="k must be"):
        KnnProbeConfig(k=0)


def test_neighbours_match_faiss_flat_search_in_any_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocked torch search returns FAISS IndexFlatIP's neighbours (the peer), whatever the block size."""
    import faiss

    from contrastive_mer.evaluation import knn
    from contrastive_mer.utils import l2_normalize

    rng = np.random.default_rng(3)
    train, test = rng.standard_normal((300, 24)).astype(np.float32), rng.standard_normal((70, 24)).astype(np.float32)
    index = faiss.IndexFlatIP(24)
    index.add(l2_normalize(train))
    ref_sims, ref_idx = index.search(l2_normalize(test), 7)
    for block in (1 << 25, 300 * 8, 1):  # one block, blocks of 8 queries, one query per block
        monkeypatch.setattr(knn, "BLOCK_ELEMENTS", block)
        sims, idx = knn.cosine_neighbours(train, test, 7, batch_size=4096)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(sims, ref_sims, atol=1e-5)


def test_equal_similarities_take_the_lower_training_index_first() -> None:
    from contrastive_mer.evaluation.knn import cosine_neighbours

    train = np.array([[1, 0], [0, 1], [2, 0], [1, 0], [0, 3]], dtype=np.float32)  # rows 0, 2, 3: one direction
    _, idx = cosine_neighbours(train, np.array([[5, 0]], dtype=np.float32), 4)
    assert idx[0].tolist()[:3] == [0, 2, 3]
    assert idx[0, 3] in (1, 4)
    with pytest.raises(ValueError, match="k must be between 1 and the 5 training rows"):
        cosine_neighbours(train, train, 6)
