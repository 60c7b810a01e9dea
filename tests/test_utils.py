"""The shared helpers (hashing, L2 normalisation, numpy conversion, class counts) against direct references."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from contrastive_mer.utils import file_sha256, infer_num_classes, l2_normalize, to_numpy


def test_file_sha256_matches_hashlib_across_block_boundaries(tmp_path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (1 << 20) + 12345, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_l2_normalize_against_numpy_reference() -> None:
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float64)
    x[2] = 0.0
    out = l2_normalize(x[:, ::2])  # a non-contiguous float64 view
    ref = x[:, ::2] / np.linalg.norm(x[:, ::2], axis=1, keepdims=True).clip(1e-12)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    assert not out[2].any()  # an all-zero row stays zero, no NaN
    np.testing.assert_allclose(l2_normalize(torch.tensor(x, requires_grad=True)), l2_normalize(x), rtol=1e-6)


def test_to_numpy_and_infer_num_classes() -> None:
    t = torch.arange(4, dtype=torch.float32, requires_grad=True) * 2
    np.testing.assert_array_equal(to_numpy(t), [0, 2, 4, 6])
    arr = np.arange(3)
    assert to_numpy(arr) is arr and to_numpy([1, 2]).tolist() == [1, 2]
    assert infer_num_classes(np.array([0, 4, 1]), None, np.array([], np.int64), torch.tensor([6, 2])) == 7
    assert infer_num_classes(np.array([1.0, np.nan, 3.0])) == 4
    assert infer_num_classes(None, np.array([])) == 0


@pytest.mark.parametrize("name", ["l2_normalise", "_normalize"])
def test_one_spelling_of_l2_normalisation(name: str) -> None:
    """Retrieval, the kNN probe and the index normalise with the one helper."""
    import contrastive_mer.evaluation.knn as knn
    import contrastive_mer.evaluation.retrieval as retrieval
    import contrastive_mer.store.index as index

    for module in (knn, retrieval, index):
        assert not hasattr(module, name)
    assert retrieval.l2_normalize is index.l2_normalize is l2_normalize


def test_l2_normalize_in_float64() -> None:
    x = np.random.default_rng(2).normal(size=(4, 3))
    out = l2_normalize(x, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-15)
