"""Merging the online probe's per-rank rows: each clip once, sorted by clip id, equal to a naive reference built
from the whole validation set, whatever the ranks and their padding; and the single-process gather/broadcast."""

from __future__ import annotations

import numpy as np
import pytest

from contrastive_mer.pretrain.online_probe_rows import ProbeRows, broadcast_scores, gather_rows, merge_rows


def _clips(n: int, seed: int = 0) -> dict[str, dict]:
    """``n`` clips with ids in a shuffled (not sorted) order: per clip its audio/video features, present
    flags, a label and a speaker."""
    rng = np.random.default_rng(seed)
    ids = [f"clip-{i:03d}" for i in rng.permutation(n)]
    return {sid: {"audio": rng.normal(size=3), "video": rng.normal(size=2), "pa": bool(rng.random() < 0.7),
                  "pv": bool(rng.random() < 0.7), "y": int(rng.integers(4)), "g": f"s{rng.integers(3)}"}
            for sid in ids}


def _piece(clips: dict[str, dict], ids: list[str]) -> ProbeRows:
    """One rank's rows for ``ids`` in that order."""
    return ProbeRows(list(ids), {"audio": np.array([clips[i]["audio"] for i in ids]).reshape(len(ids), 3),
                                 "video": np.array([clips[i]["video"] for i in ids]).reshape(len(ids), 2)},
                     {"audio": np.array([clips[i]["pa"] for i in ids], dtype=bool),
                      "video": np.array([clips[i]["pv"] for i in ids], dtype=bool)},
                     np.array([clips[i]["y"] for i in ids], dtype=np.int64), [clips[i]["g"] for i in ids])


def _distributed_shares(n: int, world: int) -> list[list[int]]:
    """The indices each rank gets from ``DistributedSampler(shuffle=False, drop_last=False)``: padded with the
    first indices to a multiple of ``world``, then strided."""
    total = -(-n // world) * world
    padded = (list(range(n)) * (total // n + 1))[:total]
    return [padded[r::world] for r in range(world)]


def _assert_rows_equal(got: ProbeRows, want: ProbeRows) -> None:
    assert got.ids == want.ids and got.groups == want.groups
    assert sorted(got.features) == sorted(want.features) == sorted(got.present)
    for m in want.features:
        np.testing.assert_array_equal(got.features[m], want.features[m])
        np.testing.assert_array_equal(got.present[m], want.present[m])
        assert got.present[m].dtype == bool
    np.testing.assert_array_equal(got.labels, want.labels)


@pytest.mark.parametrize("n, world", [(11, 2), (10, 3), (7, 4), (5, 1), (3, 5)])
def test_merge_of_padded_rank_shares_equals_the_whole_set_sorted_by_id(n, world):
    clips = _clips(n, seed=n + world)
    ids = list(clips)
    shares = _distributed_shares(n, world)
    pieces = [_piece(clips, [ids[i] for i in share]) for share in shares]
    assert sum(len(p) for p in pieces) >= n  # the padding repeats clips when world does not divide n
    merged = merge_rows(pieces)
    _assert_rows_equal(merged, _piece(clips, sorted(ids)))  # naive reference: the whole set, sorted by id
    assert len(set(merged.ids)) == n
    # the rank order of the pieces does not change the result (duplicates hold the same clip)
    _assert_rows_equal(merge_rows(pieces[::-1]), merged)


def test_merge_keeps_the_lowest_rank_copy_and_cuts_to_max_clips():
    clips = _clips(6)
    ids = sorted(clips)
    rank0, rank1 = _piece(clips, ids[:4]), _piece(clips, [ids[3], ids[5], ids[4]])
    rank1.features["audio"][0] += 100.0  # a duplicate whose features differ: the copy on rank 0 is kept
    merged = merge_rows([rank0, rank1])
    _assert_rows_equal(merged, _piece(clips, ids))
    cut = merge_rows([rank1, ProbeRows(), rank0], max_clips=2)  # the first max_clips ids, an empty rank skipped
    assert cut.ids == ids[:2] and cut.features["audio"].shape == (2, 3)
    assert merge_rows([ProbeRows(), ProbeRows()]).ids == []


def test_merge_refuses_pieces_with_different_modalities():
    clips = _clips(4)
    a, b = _piece(clips, list(clips)[:2]), _piece(clips, list(clips)[2:])
    del b.features["video"], b.present["video"]
    with pytest.raises(ValueError, match=r"piece 1 hold modalities \[.audio.\]"):
        merge_rows([a, b])


def test_single_process_gather_and_broadcast_return_their_input():
    rows = _piece(_clips(3), sorted(_clips(3)))
    assert gather_rows(rows) == [rows]
    scores = {"online_probe/linear_acc": 0.5}
    assert broadcast_scores(scores) is scores
