"""``cmer --version``, key=value overrides intermixed with options, and ``cmer init-manifest``."""

from __future__ import annotations

import argparse
import csv
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.cli import main as cli_main
from contrastive_mer.data.datasets.manifest import ManifestAdapter
from tests.conftest import cli_in_fresh_interpreter


def test_version_from_package_metadata_without_torch() -> None:
    reports, stdout = cli_in_fresh_interpreter([["--version"]], "'torch' in sys.modules")
    assert f"cmer {version('contrastive-mer')}" in stdout
    assert reports == ["False"]


@pytest.mark.parametrize("command", ["pretrain", "extract", "demo"])
def test_overrides_may_sit_before_and_after_options(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(cli_main._module(command), "run", lambda args: seen.append(args) or 0)
    argv = {"pretrain": ["--config", "X.yaml", "a=1", "--output", "R", "b.c=2", "--resume", "d=3"],
            "extract": ["--checkpoint", "C.ckpt", "a=1", "--out", "o.h5", "b.c=2", "--sequences", "audio", "d=3"],
            "demo": ["--fast", "a=1", "--output", "R", "b.c=2", "d=3"]}[command]
    assert cli_main.main([command, *argv]) == 0
    assert seen[0].command == command and seen[0].overrides == ["a=1", "b.c=2", "d=3"]
    if command == "pretrain":
        assert seen[0].config == "X.yaml" and seen[0].output == "R" and seen[0].resume


def test_unknown_option_still_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        cli_main.main(["pretrain", "--config", "X", "a=1", "--bogus"])
    assert exit.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    media = tmp_path / "media"
    for rel in ("wav/clip1.wav", "wav/clip2.wav", "wav/sub/clip3.flac", "video/clip1.mp4", "notes.md"):
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        (media / rel).write_bytes(b"x")
    (media / "au").mkdir()
    np.save(media / "au" / "clip1.npy", np.ones(4, np.float32))
    (media / "clip2.txt").write_text("hello there", encoding="utf-8")
    table = tmp_path / "labels.csv"
    table.write_text("file,emotion,valence,actor\nclip1.wav,happy,0.5,A\nclip2,sad,-1,B\nghost,sad,0,C\n",
                     encoding="utf-8")
    return media, table


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_init_manifest_reads_back_through_the_manifest_adapter(tmp_path: Path, suffix: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    media, table = _corpus(tmp_path)
    out = tmp_path / "meta" / f"manifest{suffix}"
    code = cli_main.main(["init-manifest", str(media), "--labels", str(table), "--id-column", "file",
                          "--speaker-column", "actor", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3 clip(s) (audio: 3, video: 1, transcript: 1, feat:au: 1); 2 with a label row" in printed
    assert "1 label row(s) have no file" in printed and "ghost" in printed
    assert "class_names.emotion: [happy, sad]" in printed
    adapter = ManifestAdapter(path=str(out), labels=["emotion", "valence"])
    records = {r.id: r for r in adapter.records()}
    assert sorted(records) == ["clip1", "clip2", "clip3"] and not adapter.skipped
    c1, c2, c3 = records["clip1"], records["clip2"], records["clip3"]
    assert Path(c1.sources["audio"]).resolve() == (media / "wav/clip1.wav").resolve()
    assert Path(c1.sources["video"]).resolve() == (media / "video/clip1.mp4").resolve()
    assert Path(c1.sources["au"][1]).resolve() == (media / "au/clip1.npy").resolve()
    assert Path(c3.sources["audio"]).resolve() == (media / "wav/sub/clip3.flac").resolve()
    assert c2.sources["text"][0] == "transcript" and set(c3.sources) == {"audio"}
    assert adapter.label_names == {"emotion": ["happy", "sad"]}
    assert c1.labels == {"emotion": 0, "valence": 0.5} and c2.labels == {"emotion": 1, "valence": -1.0}
    assert c3.labels == {} and c1.groups == {"speaker": "A"} and c3.groups == {}
    if suffix == ".csv":  # paths are relative to the manifest's folder
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        assert rows[0]["audio"] == "../media/wav/clip1.wav"
    else:
        assert json.loads(out.read_text().splitlines()[2]) == {"id": "clip3", "audio": "../media/wav/sub/clip3.flac"}


def test_init_manifest_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media, table = _corpus(tmp_path)
    out = tmp_path / "m.csv"
    assert cli_main.main(["init-manifest", str(media), "--out", str(out)]) == 0
    assert cli_main.main(["init-manifest", str(media), "--out", str(out)]) == 2
    assert "exists (pass --overwrite" in capsys.readouterr().err
    assert cli_main.main(["init-manifest", str(media), "--out", str(out), "--labels", str(table),
                          "--overwrite"]) == 2
    assert "no column 'id'" in capsys.readouterr().err  # the table's id column is 'file'
    (media / "wav/other").mkdir()
    (media / "wav/other/clip1.wav").write_bytes(b"x")
    assert cli_main.main(["init-manifest", str(media), "--out", str(tmp_path / "n.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cmer init-manifest: error: two audio files for clip id 'clip1'") and err.count("\n") == 1


@pytest.mark.parametrize("command", sorted(cli_main.SUBCOMMANDS))
def test_every_subcommand_parses_intermixed(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """parse_intermixed_args refuses some parser shapes (REMAINDER positionals, positionals in exclusive groups)
    with a TypeError: every subcommand's parser is one it accepts."""
    with pytest.raises(SystemExit) as exit:
        cli_main.main([command, "--help"])
    assert exit.value.code == 0 and f"usage: cmer {command}" in capsys.readouterr().out
