"""Group-disjoint splits: no speaker (or session, dialogue, ...) appears on both sides of a split.

Emotion corpora have few speakers and many clips per speaker, so a random clip-level split leaks speaker
identity into the test set. These helpers split by an arbitrary group label instead.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np


def _group_codes(groups: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map group labels to codes ``0..G-1``; returns ``(codes (N,), sizes (G,))``."""
    arr = np.asarray(groups)
    if arr.ndim != 1:
        raise ValueError(f"groups must be one-dimensional, got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError("groups is empty: nothing to split")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.reshape(-1), np.bincount(codes.reshape(-1))


def group_kfold(groups: Sequence | np.ndarray, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split sample indices into ``k`` group-disjoint folds of roughly equal sample count.

    Groups are shuffled with ``seed`` (so equal-sized groups are distributed at random), then assigned
    largest first to the fold with the fewest samples so far.

    Returns:
        ``k`` pairs ``(train_idx, test_idx)`` of sorted int64 indices; every index is in exactly one
        test fold, and no group is on both sides of any pair.

    Raises:
        ValueError: if ``k < 2`` or there are fewer distinct groups than folds.
    """
    if int(k) != k or k < 2:
        raise ValueError(f"k-fold needs an integer k >= 2, got {k!r}")
    codes, sizes = _group_codes(groups)
    n_groups = len(sizes)
    if n_groups < k:
        raise ValueError(f"cannot make {k} group-disjoint folds from {n_groups} distinct group(s); "
                         f"use at most {n_groups} folds or a finer group")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, ties in shuffled order
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    fold_of_sample = fold_of_group[codes]
    folds = []
    for f in range(k):
        test = np.flatnonzero(fold_of_sample == f).astype(np.int64)
        train = np.flatnonzero(fold_of_sample != f).astype(np.int64)
        folds.append((train, test))
    return folds


def group_train_val_split(groups: Sequence | np.ndarray, val_fraction: float,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into group-disjoint train and validation parts.

    Groups are shuffled with ``seed`` and taken into validation one by one; the prefix whose sample count
    is closest to ``val_fraction * N`` wins, with at least one group on each side.

    Returns:
        ``(train_idx, val_idx)``, sorted int64 indices, both non-empty.

    Raises:
        ValueError: if ``val_fraction`` is not in (0, 1) or there are fewer than two distinct groups.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    codes, sizes = _group_codes(groups)
    n_groups = len(sizes)
    if n_groups < 2:
        raise ValueError(f"a group-disjoint validation split needs at least 2 distinct groups, got {n_groups}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    cumulative = np.cumsum(sizes[order])[:-1]  # prefixes of 1 .. G-1 groups
    target = val_fraction * len(codes)
    n_val_groups = int(np.argmin(np.abs(cumulative - target))) + 1
    is_val = np.zeros(n_groups, dtype=bool)
    is_val[order[:n_val_groups]] = True
    val_mask = is_val[codes]
    return np.flatnonzero(~val_mask).astype(np.int64), np.flatnonzero(val_mask).astype(np.int64)


def holdout_split(groups: Sequence | np.ndarray, test_groups: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One ``(train_idx, test_idx)`` pair: the samples of ``test_groups`` against all others (same form as
    :func:`group_kfold`). ValueError when a test group has no sample or no sample is left for training."""
    groups = np.asarray(groups).astype(str)
    wanted = [str(g) for g in test_groups]
    missing = sorted(set(wanted) - set(groups.tolist()))
    if missing:
        raise ValueError(f"test group(s) {missing} have no samples; groups are {sorted(set(groups.tolist()))}")
    is_test = np.isin(groups, wanted)
    if is_test.all():
        raise ValueError("every sample is in the test groups; nothing is left to train on")
    return [(np.flatnonzero(~is_test), np.flatnonzero(is_test))]


def official_actor_split(actors: Sequence[int | str], seed: int = 42, n_val: int = 3,
                         n_test: int = 3) -> tuple[list[int | str], list[int | str], list[int | str]]:
    """The official code's RAVDESS actor split: ``(train, validation, test)`` actors, in its order.

    ``utils/utils.py``, ``split_dataset(actor_split=True)`` of github.com/ricfrr/mpuc-mer: one list per actor,
    in actor-number order, then ``random.seed(42); random.shuffle(...)``; the first actors train, the next
    validate, the last test. Its sizes come from ``split_percentage: 0.9``: ``int(24 * 0.9) = 21`` actors for
    training and validation, of which ``int(21 * 0.9) = 18`` train: 18 / 3 / 3 for RAVDESS's 24 actors, the
    defaults here. Only the list's length and the seed decide the permutation, so any actor names work; pass them
    in actor-number order (sorted here by their number when every name ends in digits).

    Raises:
        ValueError: when no actor would be left for training.
    """
    names = list(actors)
    if all(str(a)[-1:].isdigit() for a in names):
        names.sort(key=_trailing_number)
    if n_val < 0 or n_test < 0 or n_val + n_test >= len(names):
        raise ValueError(f"official_actor_split: {len(names)} actors cannot give {n_val} validation and {n_test} "
                         "test actors and keep one for training")
    rng = random.Random(seed)  # the same generator and algorithm as random.seed(seed); random.shuffle(x)
    rng.shuffle(names)
    n_train = len(names) - n_val - n_test
    return names[:n_train], names[n_train:n_train + n_val], names[n_train + n_val:]


def _trailing_number(name: int | str) -> int:
    text = str(name)
    digits = len(text) - len(text.rstrip("0123456789"))
    return int(text[len(text) - digits:])
