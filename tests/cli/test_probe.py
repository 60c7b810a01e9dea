"""``cmer probe`` reports its progress in one line per view, not one per probe and fold (it printed 32)."""

from __future__ import annotations

from contrastive_mer.cli.main import main
from tests.evaluation.test_protocol import make_data, write_store


def test_probe_prints_one_progress_line_per_view(tmp_path, capsys) -> None:
    store = write_store(tmp_path / "train.h5", make_data(120, seed=1))
    assert main(["probe", "--train", str(store), "--folds", "4", "--group", "speaker", "--label", "emotion",
                 "--probe", "both", "--weight-decays", "0.01,1", "--k", "5"]) == 0
    captured = capsys.readouterr()
    progress = captured.err.strip().splitlines()
    # 3 views x 2 probes x 4 folds = 24 probe runs, reported as 3 lines
    assert len(progress) == 3, progress
    assert [line.split(" on ")[1].split(" (")[0] for line in progress] == ["audio", "video", "fused/concat"]
    assert all(line.startswith("linear, knn probes on ") and "(4 folds, " in line for line in progress)
    assert "audio" in captured.out and "fused/concat" in captured.out  # the table itself
