"""Group-disjoint k-fold and train/validation splits."""

import numpy as np
import pytest

from contrastive_mer.data.splits import group_kfold, group_train_val_split


def _groups(rng: np.random.Generator, n_groups: int, n: int) -> np.ndarray:
    sizes = rng.integers(1, 40, n_groups)
    g = np.repeat([f"spk{i:02d}" for i in range(n_groups)], sizes)
    return rng.permutation(g)[:n] if n < len(g) else rng.permutation(g)


@pytest.mark.parametrize("k,n_groups", [(2, 2), (4, 10), (5, 24), (3, 3)])
def test_group_kfold_disjoint_and_covering(k: int, n_groups: int) -> None:
    rng = np.random.default_rng(k * 100 + n_groups)
    groups = _groups(rng, n_groups, 10_000)
    folds = group_kfold(groups, k, seed=1)
    assert len(folds) == k
    counts = np.zeros(len(groups), dtype=int)
    for train, test in folds:
        assert len(test) > 0 and len(train) > 0
        assert set(groups[train]).isdisjoint(groups[test])
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
        counts[test] += 1
    assert np.all(counts == 1)  # every index is tested exactly once


def test_group_kfold_balanced_by_samples() -> None:
    # 24 groups of very different sizes: greedy largest-first keeps folds within one big group of each other
    rng = np.random.default_rng(0)
    sizes = rng.integers(5, 100, 24)
    groups = np.repeat(np.arange(24), sizes)
    sizes_test = [len(test) for _, test in group_kfold(groups, 4, seed=0)]
    assert max(sizes_test) - min(sizes_test) <= sizes.max()
    # a naive split by group id order would be far less balanced here
    assert max(sizes_test) - min(sizes_test) < 0.1 * len(groups)


def test_group_kfold_seeded() -> None:
    groups = np.repeat(np.arange(12), 10)
    a = group_kfold(groups, 3, seed=5)
    b = group_kfold(groups, 3, seed=5)
    c = group_kfold(groups, 3, seed=6)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_group_kfold_too_few_groups() -> None:
    with pytest.raises(ValueError, match="3 group-disjoint folds from 2 distinct"):
        group_kfold(["a", "a", "b", "b"], 3)
    with pytest.raises(ValueError, match="k >= 2"):
        group_kfold(["a", "b"], 1)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_group_train_val_split(fraction: float) -> None:
    rng = np.random.default_rng(3)
    groups = _groups(rng, 30, 10_000)
    train, val = group_train_val_split(groups, fraction, seed=0)
    assert set(groups[train]).isdisjoint(groups[val])
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(groups)))
    # the chosen prefix of groups is the closest to the target, so within one group size of it
    assert abs(len(val) - fraction * len(groups)) <= 40


def test_group_train_val_split_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 distinct groups"):
        group_train_val_split(["a"] * 5, 0.2)
    with pytest.raises(ValueError, match="val_fraction"):
        group_train_val_split(["a", "b"], 1.0)
    train, val = group_train_val_split(["a", "b"], 0.01)  # always one group on each side
    assert len(train) == 1 and len(val) == 1


def test_holdout_split_keeps_test_groups_apart():
    from contrastive_mer.data.splits import holdout_split

    groups = np.array(["a", "b", "c", "a", "c", "d"])
    [(tr, te)] = holdout_split(groups, ["c", "d"])
    assert te.tolist() == [2, 4, 5] and tr.tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match=r"\['x'\] have no samples"):
        holdout_split(groups, ["x"])
    with pytest.raises(ValueError, match="nothing is left"):
        holdout_split(groups, ["a", "b", "c", "d"])


def test_official_actor_split_reproduces_the_official_shuffle():
    import random

    from contrastive_mer.data.splits import official_actor_split

    # the official way (utils/utils.py, split_dataset(actor_split=True)): one list per actor in actor order,
    # random.seed(42), random.shuffle, int(24 * 0.9) = 21 train + validation actors, int(21 * 0.9) = 18 train
    l_actor = [[f"clip of actor {a}"] for a in range(1, 25)]
    random.seed(42)
    random.shuffle(l_actor)
    order = [int(lst[0].split()[-1]) for lst in l_actor]
    n_trainval = int(len(l_actor) * 0.9)
    n_train = int(n_trainval * 0.9)
    want = (order[:n_train], order[n_train:n_trainval], order[n_trainval:])
    train, val, test = official_actor_split(range(1, 25))
    assert (train, val, test) == want and (len(train), len(val), len(test)) == (18, 3, 3)
    assert sorted(train + val + test) == list(range(1, 25))
    # names work too, in any input order (sorted by their actor number)
    names = [f"actor{a:02d}" for a in range(24, 0, -1)]
    assert official_actor_split(names) == tuple([f"actor{a:02d}" for a in part] for part in want)
    with pytest.raises(ValueError, match="cannot give"):
        official_actor_split(range(1, 7), n_val=3, n_test=3)


def test_val_groups_name_the_validation_groups():
    from contrastive_mer.data.datamodule import split_records
    from contrastive_mer.data.datasets.base import ClipRecord

    records = [ClipRecord(f"c{i}", {}, {}, {"speaker": f"actor{i % 4:02d}"}) for i in range(12)]
    train, val = split_records(records, "speaker", 0.5, 0, val_groups=["actor01", "actor03"])
    assert {r.groups["speaker"] for r in val} == {"actor01", "actor03"} and len(train) == len(val) == 6
    with pytest.raises(ValueError, match="actor09"):
        split_records(records, "speaker", 0.5, 0, val_groups=["actor09"])
