"""Write tiny corpora in their real on-disk formats (for adapter tests; no real data involved).

* :func:`write_csd` / :func:`make_mosei`: CMU Multimodal SDK computational sequences (HDF5 with
  ``<root>/data/<video>/{features,intervals}`` and ``<root>/metadata/<key>`` JSON strings, as ``write_CSD`` lays
  them out).
* :func:`make_iemocap`: the ``Session<n>/dialog/{EmoEvaluation,transcriptions}`` + ``sentences/wav`` tree.
* :func:`make_manifest_files`: a CSV and a JSONL manifest with ``.npy`` features, a transcript, a WAV and
  malformed rows at known lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import soundfile as sf

SR = 16000


def write_csd(path: Path, root_name: str, data: dict[str, tuple[np.ndarray, np.ndarray]],
              metadata: dict[str, Any] | None = None) -> Path:
    """Write ``{video: (features, intervals)}`` as a computational sequence named ``root_name``."""
    with h5py.File(path, "w") as fh:
        root = fh.create_group(root_name)
        group = root.create_group("data")
        for video, (features, intervals) in data.items():
            vid = group.create_group(video)
            vid.create_dataset("features", data=features)
            vid.create_dataset("intervals", data=intervals)
        meta = root.create_group("metadata")
        for key, value in (metadata or {"root name": root_name}).items():
            ds = meta.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(value)
    return path


def _regular(n: int, step: float) -> np.ndarray:
    return np.stack([np.arange(n) * step, (np.arange(n) + 1) * step], axis=1)


def make_mosei(root: Path, mosi: bool = False) -> dict[str, Any]:
    """MOSEI-like sequences for videos ``vidA`` (2 segments), ``vidB`` (1, one NaN audio frame), ``vidC`` (1,
    no video features). Returns the arrays written, keyed like the files."""
    root.mkdir(parents=True, exist_ok=True)
    audio = {v: (np.arange(10 * 3, dtype=np.float32).reshape(10, 3) + 100 * i, _regular(10, 0.5))
             for i, v in enumerate(["vidA", "vidB", "vidC"])}
    audio["vidB"][0][2, 1] = np.nan  # frame [1.0, 1.5] of vidB
    video_int = np.array([[0.0, 0.3], [0.3, 0.6], [0.6, 0.9], [0.9, 1.5], [1.5, 2.2], [2.2, 3.0]])
    video = {v: (np.arange(12, dtype=np.float64).reshape(6, 2) * (i + 1), video_int)
             for i, v in enumerate(["vidA", "vidB"])}
    words = np.array([[b"hello"], [b"sp"], [b"world"], [b"again"]])
    words_int = np.array([[0.0, 0.4], [0.4, 0.6], [0.6, 1.1], [1.3, 2.0]])
    text = {v: (words, words_int) for v in ["vidA", "vidB", "vidC"]}
    if mosi:
        labels = {"vidA": (np.array([[1.4], [-2.0]]), np.array([[0.0, 1.2], [1.2, 3.0]])),
                  "vidB": (np.array([[0.6]]), np.array([[0.5, 2.0]])),
                  "vidC": (np.array([[-0.2]]), np.array([[0.0, 1.0]]))}
    else:
        labels = {"vidA": (np.array([[1.5, 0.33, 0.0, 0.0, 0.66, 0.0, 0.0],
                                     [-2.0, 0.0, 1.0, 0.33, 0.0, 0.0, 3.0]]), np.array([[0.0, 1.2], [1.2, 3.0]])),
                  "vidB": (np.array([[0.5, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0]]), np.array([[0.5, 2.0]])),
                  "vidC": (np.array([[0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]), np.array([[0.0, 1.0]]))}
    prefix = "CMU_MOSI" if mosi else "CMU_MOSEI"
    files = {"audio": f"{prefix}_COVAREP.csd", "video": f"{prefix}_VisualFacet42.csd",
             "text": f"{prefix}_TimestampedWords.csd", "labels": f"{prefix}_Labels.csd"}
    write_csd(root / files["audio"], "COVAREP", audio)
    write_csd(root / files["video"], "FACET 4.2", video)
    write_csd(root / files["text"], "words", text)
    write_csd(root / files["labels"], "Opinion Segment Labels" if mosi else "All Labels", labels,
              {"dimension names": ["sentiment"] if mosi else
               ["sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear"]})
    (root / "folds.py").write_text('standard_train_fold = ["vidA"]\nstandard_valid_fold = ["vidB"]\n'
                                   'standard_test_fold = ["vidC"]\n')
    (root / "folds.json").write_text(json.dumps({"train": ["vidA", "vidC"], "test": ["vidB"]}))
    return {"files": files, "audio": audio, "video": video, "text": text, "labels": labels}


def write_wav(path: Path, seconds: float, seed: int) -> np.ndarray:
    """A 16-bit PCM mono WAV whose samples are exact multiples of 1/32768; returns them as float32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ints = rng.integers(-8000, 8000, int(seconds * SR))
    sf.write(path, ints.astype(np.int16), SR, subtype="PCM_16")
    return (ints / 32768.0).astype(np.float32)


# (dialog, utterance suffix, label, [V, A, D], transcript or None, write the wav?)
IEMOCAP_ROWS = {
    1: [("Ses01F_impro01", "F000", "neu", [2.5, 2.5, 2.5], "Excuse me.", True),
        ("Ses01F_impro01", "M000", "hap", [4.0, 3.5, 3.0], "Do you have your forms?", True),
        ("Ses01F_impro01", "F001", "exc", [4.5, 4.0, 3.5], "Yeah.", True),
        ("Ses01F_impro01", "M001", "xxx", [3.0, 3.0, 3.0], "Let me see them.", True),
        ("Ses01F_impro01", "F002", "fru", [2.0, 3.5, 3.0], None, True),
        ("Ses01M_script01_1", "F000", "ang", [1.5, 4.0, 4.0], "What?", True),
        ("Ses01M_script01_1", "M000", "sad", [1.5, 2.0, 2.0], "I'm sorry.", True),
        ("Ses01M_script01_1", "M001", "oth", [2.5, 2.5, 2.5], "Okay.", True)],
    2: [("Ses02F_impro02", "F000", "sad", [2.0, 1.5, 2.0], "It's over.", True),
        ("Ses02F_impro02", "M000", "neu", [3.0, 2.5, 3.0], "I know.", False)],
}


def make_iemocap(root: Path) -> dict[str, Any]:
    """IEMOCAP tree for sessions 1-2; returns ``{utterance: {...row..., "wav": samples or None}}``."""
    out: dict[str, Any] = {}
    for session, rows in IEMOCAP_ROWS.items():
        sdir = root / f"Session{session}"
        by_dialog: dict[str, list[str]] = {}
        trans: dict[str, list[str]] = {}
        for k, (dialog, suffix, label, vad, text, wav) in enumerate(rows):
            utt = f"{dialog}_{suffix}"
            start, end = 1.0 + 3 * k + 0.1234, 2.5 + 3 * k + 0.0001
            by_dialog.setdefault(dialog, ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""])
            by_dialog[dialog] += [f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[{vad[0]:.4f}, {vad[1]:.4f}, "
                                  f"{vad[2]:.4f}]", "C-E2:\tNeutral;\t()", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
            trans.setdefault(dialog, [])
            if text is not None:
                trans[dialog].append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
            trans[dialog].append("M: [BREATHING]" if k % 2 else f"{dialog}_MXX0 [000.0000-000.5000]: [LAUGHTER]")
            samples = write_wav(sdir / "sentences" / "wav" / dialog / f"{utt}.wav", 0.05, session * 100 + k) \
                if wav else None
            out[utt] = {"session": session, "dialog": dialog, "label": label, "vad": vad, "text": text,
                        "wav": samples}
        for dialog, lines in by_dialog.items():
            path = sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
            tpath = sdir / "dialog" / "transcriptions" / f"{dialog}.txt"
            tpath.parent.mkdir(parents=True, exist_ok=True)
            tpath.write_text("\n".join(trans[dialog]) + "\n")
        (sdir / "dialog" / "EmoEvaluation" / "Categorical").mkdir(exist_ok=True)  # as in the release
    return out


def make_manifest_files(root: Path) -> dict[str, Any]:
    """``clips.csv`` and ``clips.jsonl`` under ``root`` plus the files they point to (relative paths)."""
    (root / "feats").mkdir(parents=True, exist_ok=True)
    (root / "text").mkdir(exist_ok=True)
    feats = {"c1": np.arange(6, dtype=np.float32).reshape(2, 3), "c2": np.linspace(0, 1, 4).astype(np.float32)}
    for name, arr in feats.items():
        np.save(root / "feats" / f"{name}.npy", arr)
    np.save(root / "feats" / "c3.npy", np.array([1.0, np.nan, 2.0], dtype=np.float32))
    (root / "feats" / "c4.npy").write_bytes(b"not a numpy file")
    (root / "text" / "c2.txt").write_text("  spoken words of c2\n")
    wav = write_wav(root / "wav" / "c1.wav", 0.1, 7)
    csv_lines = [
        "id,audio,text,transcript,feat:au,emotion,arousal,speaker",          # 1
        "c1,wav/c1.wav,hello there,,feats/c1.npy,happy,0.5,spk1",            # 2
        'c2,,"two\nlines",text/c2.txt,feats/c2.npy,sad,-0.25,spk2',         # 3-4
        ",,orphan,,,sad,0.1,spk3",                                           # 5: missing id
        "c1,,dup,,,sad,0.0,spk1",                                            # 6: duplicate id
        "",                                                                  # 7: blank
        "c3,,,text/c2.txt,feats/c3.npy,angry,1.0,spk3",                      # 8: NaN features
        "c4,,,,feats/c4.npy,happy,0.75,spk2",                                # 9: unreadable npy
        "c5,,a,b,c,d,e,f,g,h",                                               # 10: too many cells
    ]
    (root / "clips.csv").write_text("\n".join(csv_lines) + "\n")
    jsonl = [
        json.dumps({"id": "j1", "text": "hi", "feat:au": "feats/c1.npy", "emotion": [1, 0, 1], "valence": 2,
                    "speaker": "s1"}),                                       # 1
        "{not json",                                                         # 2
        json.dumps([1, 2]),                                                  # 3
        json.dumps({"text": "no id", "emotion": [0, 0, 1], "valence": 1}),  # 4
        json.dumps({"id": "j2", "transcript": "text/c2.txt", "emotion": [0, 1, 0], "valence": -1.5,
                    "group": "g7"}),                                         # 5
        json.dumps({"id": "j1", "text": "again"}),                           # 6
    ]
    (root / "clips.jsonl").write_text("\n".join(jsonl) + "\n")
    return {"feats": feats, "wav": wav}
