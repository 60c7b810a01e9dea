"""Write a tiny example corpus and its manifest (CSV and JSONL), the shape `cmer` reads for your own data.

    python experiments/make_manifest_example.py [--out runs/manifest_example] [--speakers 6] [--clips 4]
    cmer pretrain --config experiments/manifest_example.yaml --output runs/manifest_example/run

Each clip is a short WAV tone whose pitch depends on its emotion (plus noise), a per-clip feature vector
(``au/<id>.npy``, 17 floats, standing in for action units) and a one-line transcript. The manifest names them
with paths relative to itself; see docs/own_corpus.md for every column and option.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

EMOTIONS = ["neutral", "happy", "sad", "angry"]
COLUMNS = ["id", "audio", "feat:au", "text", "emotion", "valence", "speaker"]


def make_example(out: Path, speakers: int = 6, clips: int = 4, sample_rate: int = 16000, seed: int = 0) -> dict:
    """Write ``out/manifest.csv``, ``out/manifest.jsonl``, ``out/wav/*.wav`` and ``out/au/*.npy``;
    returns the paths and the number of rows."""
    rng = np.random.default_rng(seed)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "au").mkdir(parents=True, exist_ok=True)
    rows = []
    centres = rng.normal(size=(len(EMOTIONS), 17))
    for s in range(speakers):
        for e, emotion in enumerate(EMOTIONS):
            for c in range(clips):
                cid = f"spk{s:02d}_{emotion}_{c:02d}"
                t = np.arange(int(sample_rate * rng.uniform(0.8, 1.5))) / sample_rate
                pitch = 150 * (1 + 0.25 * e) * (1 + 0.05 * s)
                wave = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.normal(size=t.shape)
                sf.write(out / "wav" / f"{cid}.wav", wave.astype(np.float32), sample_rate)
                np.save(out / "au" / f"{cid}.npy", (centres[e] + 0.5 * rng.normal(size=17)).astype(np.float32))
                rows.append({"id": cid, "audio": f"wav/{cid}.wav", "feat:au": f"au/{cid}.npy",
                             "text": f"speaker {s} says sentence {c}", "emotion": emotion,
                             "valence": [0.0, 1.0, -1.0, -0.5][e], "speaker": f"spk{s:02d}"})
    with open(out / "manifest.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return {"csv": out / "manifest.csv", "jsonl": out / "manifest.jsonl", "rows": len(rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/manifest_example", help="folder to write (default runs/manifest_example)")
    p.add_argument("--speakers", type=int, default=6)
    p.add_argument("--clips", type=int, default=4, help="clips per speaker and emotion")
    args = p.parse_args(argv)
    made = make_example(Path(args.out), args.speakers, args.clips)
    print(f"wrote {made['rows']} clips: {made['csv']} and {made['jsonl']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
