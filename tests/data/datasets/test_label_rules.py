"""Issue 22 items 6, 7 and 13: one rule for label text (init-manifest and the manifest reader agree), labels
never remove a clip, a UTF-8 BOM manifest reads, MP4 audio tracks and symlink loops in init-manifest, and
``data.confine_paths`` keeping every file a manifest names inside a root."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from contrastive_mer.cli import main as cli_main
from contrastive_mer.data.datasets.base import SampleError
from contrastive_mer.data.datasets.manifest import ManifestAdapter
from contrastive_mer.data.label_text import case_variants, normalize_label

EMOTIONS = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]


def _spellings(word: str, i: int) -> str:
    """Three spellings per emotion, as hand-made label tables have them."""
    return [word, f" {word.capitalize()}", f"{word.upper()} "][i % 3]


def _messy_corpus(tmp_path: Path) -> tuple[Path, Path]:
    """24 feature clips, 3 per emotion, each emotion written three ways (case, spaces)."""
    media = tmp_path / "media"
    media.mkdir()
    rows = ["file,emotion,speaker"]
    for i in range(24):
        np.save(media / f"c{i:02d}.npy", np.full(4, i, np.float32))
        rows.append(f"c{i:02d}.npy,{_spellings(EMOTIONS[i // 3], i)},s{i % 4}")
    table = tmp_path / "labels.csv"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return media, table


def test_normalize_label_against_the_plain_rule() -> None:
    for raw in ["Happy", " happy", "HAPPY ", "happy", "\thappy\n"]:
        assert normalize_label(raw) == "happy"
    assert normalize_label(" Very   Happy ", keep_case=True) == "Very Happy"
    assert case_variants(["a", "A", "b", "b ", "c"]) == {"a": ["A", "a"], "b": ["b", "b "]}


def test_init_manifest_and_the_reader_give_eight_classes_not_24(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    media, table = _messy_corpus(tmp_path)
    out = tmp_path / "m.csv"
    assert cli_main.main(["init-manifest", str(media), "--labels", str(table), "--id-column", "file",
                          "--speaker-column", "speaker", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"class_names.emotion: [{', '.join(EMOTIONS)}]" in printed
    assert "warning: label 'emotion': values that differ only in case or spaces" in printed
    assert "' Happy' / 'HAPPY ' / 'happy'" in printed
    adapter = ManifestAdapter(path=str(out), labels=["emotion"])
    records = adapter.records()
    assert adapter.label_names == {"emotion": EMOTIONS} and len(records) == 24
    assert [r.labels["emotion"] for r in records] == [i // 3 for i in range(24)]

    # the reader applies the same rule to a hand-written manifest (raw spellings, no init-manifest)
    raw = tmp_path / "raw.csv"
    raw.write_text("id,feat:au,emotion\n" + "".join(
        f"c{i:02d},media/c{i:02d}.npy,{_spellings(EMOTIONS[i // 3], i)}\n" for i in range(24)), encoding="utf-8")
    adapter = ManifestAdapter(path=str(raw), labels=["emotion"])
    assert [r.labels["emotion"] for r in adapter.records()] == [i // 3 for i in range(24)]
    assert adapter.label_names == {"emotion": EMOTIONS}
    assert len(adapter.warnings) == 1 and "differ only in case" in adapter.warnings[0]
    assert "differ only in case" in capsys.readouterr().err

    kept = ManifestAdapter(path=str(raw), labels=["emotion"], keep_label_case=True)
    kept.records()
    assert len(kept.label_names["emotion"]) == 24 and "case is kept" in kept.warnings[0]


def test_labels_never_remove_a_clip(tmp_path: Path) -> None:
    """A value outside class_names leaves the clip without the label (warned), not out of the corpus."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,emotion\na,hi,Happy\nb,ho,bored\nc,hu,sad \nd,he,\n", encoding="utf-8")
    adapter = ManifestAdapter(path=str(manifest), labels=["emotion"],
                              class_names={"emotion": ["happy", "SAD"]})
    records = {r.id: r for r in adapter.records()}
    assert sorted(records) == ["a", "b", "c", "d"] and not adapter.skipped
    assert records["a"].labels == {"emotion": 0} and records["c"].labels == {"emotion": 1}
    assert records["b"].labels == {} and records["d"].labels == {}
    assert any("'bored' (1: b)" in w and "kept without this label" in w for w in adapter.warnings)
    strict = ManifestAdapter(path=str(manifest), labels=["emotion"], class_names={"emotion": ["happy", "sad"]},
                             strict=True)
    with pytest.raises(ValueError, match="'bored' not in"):
        strict.records()
    tags = tmp_path / "m.jsonl"  # a multi-label list holding a word: that clip keeps no tags, and stays
    tags.write_text('{"id": "a", "text": "hi", "tags": [1, 0]}\n{"id": "b", "text": "ho", "tags": [1, "x"]}\n',
                    encoding="utf-8")
    adapter = ManifestAdapter(path=str(tags), labels=["tags"])
    records = {r.id: r for r in adapter.records()}
    assert records["a"].labels == {"tags": [1.0, 0.0]} and records["b"].labels == {} and not adapter.skipped
    assert "not readable" in adapter.warnings[-1] and "(1: b)" in adapter.warnings[-1]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_with_a_utf8_bom_reads_like_one_without(tmp_path: Path, suffix: str) -> None:
    body = ("id,text,emotion\na,hi,happy\nb,ho,sad\n" if suffix == ".csv" else
            '{"id": "a", "text": "hi", "emotion": "happy"}\n{"id": "b", "text": "ho", "emotion": "sad"}\n')
    plain, bom = tmp_path / f"plain{suffix}", tmp_path / f"bom{suffix}"
    plain.write_text(body, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    read = [ManifestAdapter(path=str(p), labels=["emotion"]).records() for p in (plain, bom)]
    assert read[0] == read[1] and [r.id for r in read[1]] == ["a", "b"]


def _tiny_mp4(path: Path, *, audio: bool) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        a = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(5):
            img = np.full((32, 32, 3), 40 * i, np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if a is not None:
            step = a.codec_context.frame_size or 1024
            wave = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
            for start in range(0, len(wave), step):
                frame = av.AudioFrame.from_ndarray(wave[None, start:start + step], format="fltp", layout="mono")
                frame.sample_rate = 16000
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode(None):
                out.mux(packet)
    return path


def test_init_manifest_fills_audio_from_an_mp4_track_and_skips_symlink_loops(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    media = tmp_path / "media"
    media.mkdir()
    both = _tiny_mp4(media / "both.mp4", audio=True)
    _tiny_mp4(media / "mute.mp4", audio=False)
    _tiny_mp4(media / "own.mp4", audio=True)
    (media / "own.wav").write_bytes(b"RIFF")  # a clip's own audio file wins over its video's track
    (media / "loop1.wav").symlink_to(media / "loop2.wav")
    (media / "loop2.wav").symlink_to(media / "loop1.wav")
    (media / "gone.mp4").symlink_to(media / "nothing.mp4")
    out = tmp_path / "m.csv"
    assert cli_main.main(["init-manifest", str(media), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 file(s) skipped" in printed
    assert f"{media / 'loop1.wav'}: symbolic link loop" in printed and "gone.mp4: broken symbolic link" in printed
    rows = {r["id"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert sorted(rows) == ["both", "mute", "own"]
    assert rows["both"]["audio"] == rows["both"]["video"] == "media/both.mp4"
    assert rows["mute"]["audio"] == "" and rows["own"]["audio"] == "media/own.wav"

    adapter = ManifestAdapter(path=str(out), modalities=["audio"])
    record = next(r for r in adapter.records() if r.id == "both")
    sample = adapter.load(record, ["audio"])
    assert sample.inputs["audio"].ndim == 1 and np.abs(sample.inputs["audio"]).max() > 0.05
    assert Path(record.sources["audio"]).resolve() == both.resolve()


def test_confine_paths_keeps_every_named_file_inside_the_root(tmp_path: Path) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "secret"
    corpus.mkdir()
    outside.mkdir()
    (outside / "shadow.txt").write_text("root:x:0:0", encoding="utf-8")
    np.save(outside / "x.npy", np.ones(3, np.float32))
    (corpus / "ok.txt").write_text("fine words", encoding="utf-8")
    (corpus / "link.txt").symlink_to(outside / "shadow.txt")  # inside by name, outside once followed
    manifest = corpus / "m.csv"
    manifest.write_text("id,transcript,feat:au\n"
                        f"ok,ok.txt,\nabs,{outside / 'shadow.txt'},\nup,../secret/shadow.txt,\n"
                        "link,link.txt,\nnpy,,../secret/x.npy\n", encoding="utf-8")
    trusting = ManifestAdapter(path=str(manifest))
    assert trusting.load(trusting.records()[1], ["text"]).inputs["text"] == "root:x:0:0"  # the default policy
    for confine in ("manifest", str(corpus)):
        adapter = ManifestAdapter(path=str(manifest), confine_paths=confine)
        records = {r.id: r for r in adapter.records()}
        assert sorted(records) == ["abs", "link", "npy", "ok", "up"]  # ids listed, so the skip report names them
        assert adapter.load(records["ok"], ["text"]).inputs["text"] == "fine words"
        for sid in ("abs", "up", "link", "npy"):
            with pytest.raises(SampleError, match="outside confine_paths"):
                adapter.load(records[sid], ["text", "au"])


def test_confine_paths_from_the_config(tmp_path: Path) -> None:
    from contrastive_mer.config import ConfigError
    from contrastive_mer.data.datamodule import build_corpus
    from contrastive_mer.experiment import load_config
    from tests.cli.test_faults import feature_corpus, feature_overrides

    manifest = feature_corpus(tmp_path / "corpus", 4)
    np.save(tmp_path / "elsewhere.npy", np.ones(6, np.float32))
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].replace("au00.npy", str(tmp_path / "elsewhere.npy"))
    manifest.write_text("\n".join(lines) + "\n")
    cfg = load_config(None, feature_overrides(manifest) + ["data.confine_paths=manifest"])
    adapter = build_corpus(cfg)
    assert adapter.options.confine_paths == "manifest"
    records = adapter.records()
    with pytest.raises(SampleError, match="outside confine_paths"):
        adapter.load(records[0], ["au", "pose"])
    assert adapter.load(records[1], ["au", "pose"]).inputs["au"].shape == (6,)
    with pytest.raises(ConfigError, match="data.confine_paths: dataset 'synthetic' reads no paths"):
        load_config(None, feature_overrides(manifest) + ["data.dataset=synthetic", "data.confine_paths=/data"])
    with pytest.raises(ConfigError, match="data.confine_paths"):
        load_config(None, feature_overrides(manifest) + ["data.confine_paths=' '"])
