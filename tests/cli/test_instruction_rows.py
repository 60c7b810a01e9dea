"""``cmer instruction-rows``: rows for the labelled clips of a store (a clip without a label is left out), the
placeholders of the store's own sources, several phrasings per clip, and one-line refusals."""

from __future__ import annotations

import numpy as np

from contrastive_mer.cli.instruction_rows import default_tokens
from contrastive_mer.cli.main import main
from contrastive_mer.frontend.instructions import read_instructions
from contrastive_mer.store.hdf5 import FeatureStoreWriter

EMOTIONS = ["happy", "sad", "angry"]


def _store(path, codes):
    n = len(codes)
    with FeatureStoreWriter(path, ["audio", "text"], {"audio": 4, "text": 3}, None, labels={"emotion": EMOTIONS},
                            fsync=False) as w:
        w.append([f"clip{i}" for i in range(n)], {"emotion": np.asarray(codes)}, {},
                 {"audio": np.zeros((n, 4), np.float32), "text": np.zeros((n, 3), np.float32)}, projections={},
                 present={"audio": np.ones(n, bool), "text": np.ones(n, bool)}, fused={})
    return path


def test_rows_from_a_labelled_store(tmp_path, capsys) -> None:
    store = _store(tmp_path / "s.h5", [0, 2, -1, 1])  # clip2's label is missing
    out = tmp_path / "rows.jsonl"
    assert main(["instruction-rows", "--features", str(store), "--out", str(out)]) == 0
    assert "3 instruction rows for 3 of 4 clips" in capsys.readouterr().out
    rows = read_instructions(out)
    assert [r.id for r in rows] == ["clip0", "clip1", "clip3"]
    for row, emotion in zip(rows, ["happy", "angry", "sad"]):
        assert emotion in str(row.answer) and not any(e in str(row.answer) for e in EMOTIONS if e != emotion)
        assert "Audio: <audio> Text: <text>" in row.prompt and "<video>" not in row.prompt
        assert "<fused>" not in row.prompt  # the store has no fused features

    assert main(["instruction-rows", "--features", str(store), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    args = ["instruction-rows", "--features", str(store), "--out", str(out), "--overwrite", "--rows-per-clip", "2",
            "--tokens", "<audio>", "--seed", "3"]
    assert main(args) == 0
    rows = read_instructions(out)
    assert [r.id for r in rows] == ["clip0#0", "clip0#1", "clip1#0", "clip1#1", "clip3#0", "clip3#1"]
    assert {r.clip for r in rows} == {"clip0", "clip1", "clip3"}
    assert all(r.prompt.startswith("<audio> ") for r in rows)
    first = out.read_text()
    assert main(args) == 0 and out.read_text() == first  # seeded phrasings

    capsys.readouterr()
    assert main(["instruction-rows", "--features", str(store), "--out", str(out), "--overwrite",
                 "--label", "valence"]) == 2
    assert "no label 'valence'" in capsys.readouterr().err


def test_default_tokens() -> None:
    assert default_tokens(["audio", "video"], True) == "Audio: <audio> Video: <video> Overall: <fused>"
    assert default_tokens(["text"], False) == "Text: <text>"
