"""OpenFace landmark CSV reader, on small CSVs written in OpenFace 2.2 FeatureExtraction's column layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_mer.data.landmarks import flatten_landmarks, minmax_normalize, read_openface_landmarks
from contrastive_mer.encoders import build_encoder


def openface_header() -> list[str]:
    """FeatureExtraction's columns, in its order (2-D and 3-D face landmarks, eye landmarks, pose, AUs)."""
    cols = ["frame", "face_id", "timestamp", "confidence", "success"]
    cols += [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
    cols += [f"eye_lmk_{a}_{k}" for a in ("x", "y", "X", "Y", "Z") for k in range(56)]
    cols += [f"pose_{p}" for p in ("Tx", "Ty", "Tz", "Rx", "Ry", "Rz")]
    cols += [f"{a}_{k}" for a in ("x", "y", "X", "Y", "Z") for k in range(68)]
    cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{k}" for k in range(34)]
    cols += ["AU01_r", "AU02_r", "AU45_c"]
    return cols


def write_openface_csv(path: Path, xy: np.ndarray, success: list[int] | None = None) -> Path:
    """Write ``xy`` ``(T, 68, 2)`` as an OpenFace CSV: ``", "``-separated header, other columns filled with noise."""
    header = openface_header()
    rng = np.random.default_rng(0)
    lines = [", ".join(header)]
    for t in range(xy.shape[0]):
        values = {name: f"{v:.3f}" for name, v in zip(header, rng.normal(size=len(header)) * 50)}
        values.update(frame=str(t + 1), face_id="0", timestamp=f"{t / 30:.3f}",
                      success=str(1 if success is None else success[t]))
        for k in range(68):
            values[f"x_{k}"] = f"{xy[t, k, 0]:.3f}"
            values[f"y_{k}"] = f"{xy[t, k, 1]:.3f}"
        lines.append(", ".join(values[name] for name in header))
    path.write_text("\n".join(lines) + "\n")
    return path


def face_track(frames: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform([200, 150], [440, 400], size=(68, 2))
    drift = np.cumsum(rng.normal(scale=2.0, size=(frames, 1, 2)), axis=0)
    return np.round(base + drift + rng.normal(scale=0.5, size=(frames, 68, 2)), 3)


def test_reads_drops_jaw_and_normalises_per_clip_like_numpy(tmp_path):
    xy = face_track(5)
    points = read_openface_landmarks(write_openface_csv(tmp_path / "clip.csv", xy))
    assert points.shape == (5, 51, 2) and points.dtype == np.float32
    # reference: min-max over all frames and all 68 points per axis, then drop points 0-16
    expected = (xy - xy.min(axis=(0, 1))) / (xy.max(axis=(0, 1)) - xy.min(axis=(0, 1)))
    np.testing.assert_allclose(points, expected[:, 17:], rtol=1e-6, atol=1e-6)
    raw = read_openface_landmarks(tmp_path / "clip.csv", drop_jaw=False, normalize=False)
    np.testing.assert_allclose(raw, xy, rtol=1e-6)  # x_k / y_k, not X_k or eye_lmk_x_k


def test_skip_failed_frames(tmp_path):
    xy = face_track(4)
    xy[2] = 0.0  # OpenFace writes zeros when tracking fails
    path = write_openface_csv(tmp_path / "clip.csv", xy, success=[1, 1, 0, 1])
    kept = read_openface_landmarks(path, skip_failed_frames=True, normalize=False, drop_jaw=False)
    np.testing.assert_allclose(kept, xy[[0, 1, 3]], rtol=1e-6)
    assert read_openface_landmarks(path).shape == (4, 51, 2)  # kept by default, as the official code does


def test_feeds_the_stgcn_encoder(tmp_path):
    points = read_openface_landmarks(write_openface_csv(tmp_path / "clip.csv", face_track(6)))
    flat = flatten_landmarks(points)
    assert flat.shape == (6, 102) and flat[0, 2] == points[0, 1, 0]
    enc = build_encoder("stgcn", {"hidden_channels": 4, "spatial_channels": 2, "node_dim": 2, "output_dim": 3})
    with torch.no_grad():
        torch.testing.assert_close(enc.eval()(torch.from_numpy(flat)[None]).feature,
                                   enc(torch.from_numpy(points)[None]).feature)


def test_errors_name_the_file_line_and_column(tmp_path):
    good = write_openface_csv(tmp_path / "good.csv", face_track(3))
    lines = good.read_text().splitlines()

    no_column = tmp_path / "no_column.csv"
    no_column.write_text("\n".join(line.replace("y_67", "yy_67") for line in lines))
    with pytest.raises(ValueError, match=r"no_column\.csv: missing OpenFace landmark column\(s\) y_67"):
        read_openface_landmarks(no_column)

    header = [h.strip() for h in lines[0].split(",")]
    bad_cell = tmp_path / "bad_cell.csv"
    row = lines[2].split(", ")
    row[header.index("x_20")] = "abc"
    bad_cell.write_text("\n".join([lines[0], lines[1], ", ".join(row)]))
    with pytest.raises(ValueError, match=r"bad_cell\.csv: line 3, column 'x_20': 'abc' is not a number"):
        read_openface_landmarks(bad_cell)

    short = tmp_path / "short.csv"
    short.write_text("\n".join([lines[0], lines[1][:40]]))
    with pytest.raises(ValueError, match=r"short\.csv: line 2 has"):
        read_openface_landmarks(short)

    header_only = tmp_path / "header_only.csv"
    header_only.write_text(lines[0] + "\n")
    with pytest.raises(ValueError, match=r"header_only\.csv: no frames"):
        read_openface_landmarks(header_only)

    with pytest.raises(FileNotFoundError, match="absent.csv"):
        read_openface_landmarks(tmp_path / "absent.csv")

    flat = write_openface_csv(tmp_path / "untracked.csv", np.zeros((3, 68, 2)))
    with pytest.raises(ValueError, match=r"untracked\.csv: every x coordinate is 0"):
        read_openface_landmarks(flat)


def test_minmax_normalize_range():
    pts = np.random.default_rng(3).normal(size=(7, 51, 2)) * 30 + 100
    out = minmax_normalize(pts)
    np.testing.assert_allclose(out.min(axis=(0, 1)), [0, 0])
    np.testing.assert_allclose(out.max(axis=(0, 1)), [1, 1])
