"""Procedural face video for the synthetic corpus (vectorised numpy drawing, no files).

A face is a few soft-edged shapes (face ellipse, hair, eyes with pupils, brows, nose, mouth) drawn on a
``(T, H, W)`` coordinate grid at once. The speaker fixes the shape and colours; the clip's latent emotion
state ``(valence, arousal, dominance)`` drives mouth curvature/opening, brow height/angle and eye opening,
each read with its own noise; a temporal profile lets the expression develop over the frames; per-frame pose
jitter (translation, scale, rotation), a per-clip lighting gain and pixel noise are nuisances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceTraits:
    """Speaker-specific face geometry (normalised coordinates, face centre at 0) and colours (RGB 0..255)."""

    face_w: float
    face_h: float
    hair_h: float
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_w: float
    brow_thick: float
    mouth_y: float
    mouth_w: float
    nose_len: float
    rest_curve: float
    rest_brow: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    background: tuple[float, float, float]
    lips: tuple[float, float, float]


def _shrink(value, centre, spread: float):
    """``centre + spread * (value - centre)``; ``value`` itself at ``spread == 1`` (bit-identical defaults)."""
    if spread == 1.0:
        return value
    return np.asarray(centre) + spread * (np.asarray(value) - np.asarray(centre))


#: (low, high) ranges of the scalar face traits; ``speaker_spread`` shrinks draws towards their middles
_FACE_RANGES = {"face_w": (0.52, 0.68), "face_h": (0.72, 0.88), "hair_h": (0.18, 0.35), "eye_x": (0.22, 0.26),
                "eye_y": (-0.14, -0.10), "eye_w": (0.09, 0.12), "eye_h": (0.045, 0.06), "brow_gap": (0.10, 0.14),
                "brow_w": (0.10, 0.14), "brow_thick": (0.035, 0.055), "mouth_y": (0.38, 0.44),
                "mouth_w": (0.2, 0.26), "nose_len": (0.12, 0.2)}
_HAIR = np.array([[30, 25, 20], [90, 60, 30], [200, 170, 100], [120, 120, 120], [150, 50, 30]], float)


def _rgb(colour: np.ndarray) -> tuple[float, float, float]:
    """An RGB triple clipped to 0..255, as plain floats."""
    r, g, b = (float(v) for v in np.clip(colour, 0, 255))
    return r, g, b


def sample_face_traits(rng: np.random.Generator, spread: float = 1.0) -> FaceTraits:
    """Draw one speaker's face traits; ``spread`` scales how far they stray from the average face (1: default)."""
    tone = _shrink(rng.uniform(0.0, 1.0), 0.5, spread)
    skin = np.array([235.0, 200.0, 170.0]) * (1 - tone) + np.array([120.0, 80.0, 55.0]) * tone
    skin = skin + spread * rng.normal(0, 6, 3)
    hair = rng.choice([[30, 25, 20], [90, 60, 30], [200, 170, 100], [120, 120, 120], [150, 50, 30]])
    hair = _shrink(np.asarray(hair, float) + rng.normal(0, 8, 3), _HAIR.mean(axis=0), spread)
    background = _shrink(rng.uniform(40, 220, 3), 130.0, spread)
    lips = skin * np.array([0.85, 0.6, 0.6])
    shape = {k: float(_shrink(rng.uniform(lo, hi), (lo + hi) / 2, spread)) for k, (lo, hi) in _FACE_RANGES.items()}
    return FaceTraits(
        **shape, rest_curve=float(spread * rng.normal(0, 0.01)), rest_brow=float(spread * rng.normal(0, 0.01)),
        skin=_rgb(skin), hair=_rgb(hair), background=_rgb(background), lips=_rgb(lips),
    )


def expression_profile(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame expression intensity in ``[0.25, 1]``: a sigmoid onset at a random frame."""
    t = np.arange(num_frames, dtype=np.float64)
    onset = rng.uniform(-0.2, 0.5) * num_frames
    width = rng.uniform(0.05, 0.2) * num_frames + 1e-3
    return 0.25 + 0.75 / (1.0 + np.exp(-(t - onset) / width))


def _blend(img: np.ndarray, alpha: np.ndarray, colour) -> None:
    """In place: ``img = img + alpha * (colour - img)``, ``img`` channel-first ``(3, T, H, W)``."""
    img += alpha * (np.asarray(colour, np.float32)[:, None, None, None] - img)


def _soft(dist: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (negative inside), in pixel units ``pixel``."""
    return np.clip(np.float32(0.5) - dist / pixel, np.float32(0.0), np.float32(1.0))


@dataclass
class _Pose:
    """Per-frame similarity transform image <- face coordinates; arrays of shape ``(T, 1, 1)``."""

    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    theta: np.ndarray

    def window(self, x0: float, x1: float, y0: float, y1: float, *, size: int) -> tuple[slice, slice] | None:
        """Rows/columns of the image covering the face-coordinate box in every frame (+2 px margin)."""
        xs = np.array([x0, x1, x0, x1], np.float32)
        ys = np.array([y0, y0, y1, y1], np.float32)
        cos, sin = np.cos(self.theta), np.sin(self.theta)
        u = self.scale * (xs * cos - ys * sin) + self.dx
        v = self.scale * (xs * sin + ys * cos) + self.dy
        to_px = lambda w: (w + 1.0) * size / 2.0 - 0.5  # noqa: E731
        c0, c1 = max(int(np.floor(to_px(u.min()))) - 2, 0), min(int(np.ceil(to_px(u.max()))) + 3, size)
        r0, r1 = max(int(np.floor(to_px(v.min()))) - 2, 0), min(int(np.ceil(to_px(v.max()))) + 3, size)
        return (slice(r0, r1), slice(c0, c1)) if r1 > r0 and c1 > c0 else None


def expression_parameters(state: np.ndarray, rng: np.random.Generator, signal: float = 1.0,
                          noise: float = 1.0) -> tuple[float, float, float, float, float]:
    """The apex expression ``(curve, opening, brow_raise, brow_angle, eye_open)`` read from the latent state
    ``(valence, arousal, dominance)``, each with its own noise (five draws from ``rng``, in that order)."""
    v, ar, dom = (float(x) for x in state)
    n = lambda scale: noise * scale * rng.normal()  # noqa: E731
    curve = signal * (0.24 * v + 0.03 * ar) + n(0.05)
    opening = signal * (0.08 * ar - 0.04 * dom + 0.03 * v) + n(0.025)
    brow_raise = signal * (0.07 * ar - 0.08 * dom) + n(0.02)
    brow_angle = signal * (0.6 * dom - 0.2 * v) + n(0.15)
    eye_open = signal * (0.6 * ar - 0.35 * v) + n(0.15)
    return curve, opening, brow_raise, brow_angle, eye_open


def random_pose(num_frames: int, rng: np.random.Generator, noise: float = 1.0) -> _Pose:
    """Per-frame head pose: smooth random walks of translation, scale and rotation, arrays ``(T, 1, 1)``."""

    def walk(scale: float) -> np.ndarray:
        steps = np.cumsum(rng.normal(0, scale * noise, num_frames)) + rng.normal(0, 1.5 * scale * noise)
        return steps.astype(np.float32)[:, None, None]

    return _Pose(walk(0.012), walk(0.012), np.float32(1.0) + walk(0.01), walk(0.015))


def draw_face(traits: FaceTraits, state: np.ndarray, rng: np.random.Generator, *, num_frames: int,
              image_size: int, signal: float = 1.0, noise: float = 1.0, pixel_noise: float = 8.0) -> np.ndarray:
    """Render a clip's face video.

    Args:
        traits: the speaker's face.
        state: the clip's latent emotion state ``(valence, arousal, dominance)``.
        rng: the clip's video random stream.
        signal: scales how strongly ``state`` moves the face.
        noise: scales read noise on the expression parameters and the pose jitter.
        pixel_noise: standard deviation of the additive pixel noise (grey levels).

    Returns:
        uint8 array ``(num_frames, image_size, image_size, 3)``.
    """
    curve, opening, brow_raise, brow_angle, eye_open = expression_parameters(state, rng, signal, noise)
    T, S, t = num_frames, image_size, traits
    prof = expression_profile(T, rng).astype(np.float32)[:, None, None]
    pose = random_pose(T, rng, noise)
    lin = (np.arange(S, dtype=np.float32) + np.float32(0.5)) / np.float32(S / 2) - np.float32(1.0)
    U, V = lin[None, None, :] - pose.dx, lin[None, :, None] - pose.dy
    cos, sin = np.cos(pose.theta), np.sin(pose.theta)
    x = (U * cos + V * sin) / pose.scale
    y = (V * cos - U * sin) / pose.scale
    px = np.float32(2.0 / S) / pose.scale  # one pixel in face units, per frame

    top = np.linspace(0.85, 1.1, S, dtype=np.float32)[None, None, :, None]
    img = np.broadcast_to(np.asarray(t.background, np.float32)[:, None, None, None] * top, (3, T, S, S)).copy()
    r_face = np.sqrt((x / t.face_w) ** 2 + (y / t.face_h) ** 2)
    face_alpha = _soft((r_face - 1) * min(t.face_w, t.face_h), px)
    _blend(img, face_alpha, t.skin)
    _blend(img, face_alpha * _soft(y - (-t.face_h + t.hair_h), px), t.hair)

    # the small parts are drawn only inside their image windows
    nose_y = (t.eye_y + t.mouth_y) / 2
    win = pose.window(-0.04, 0.04, nose_y - t.nose_len / 2, nose_y + t.nose_len / 2, size=S)
    if win is not None:  # nose: a slightly darker thin vertical ellipse
        xs, ys, sub = x[:, win[0], win[1]], y[:, win[0], win[1]], img[:, :, win[0], win[1]]
        r_nose = np.sqrt((xs / 0.03) ** 2 + ((ys - nose_y) / (t.nose_len / 2)) ** 2)
        _blend(sub, 0.35 * _soft((r_nose - 1) * 0.03, px), np.asarray(t.skin) * 0.7)

    brow_reach = abs(t.rest_brow) + abs(brow_raise) + abs(brow_angle) * t.brow_w + t.brow_thick / 2
    half_w = t.eye_x + max(t.eye_w, t.brow_w) + 0.02
    win = pose.window(-half_w, half_w, t.eye_y - t.brow_gap - brow_reach,
                      max(t.eye_y + 2.2 * t.eye_h, t.eye_y - t.brow_gap + brow_reach) + 0.01, size=S)
    if win is not None:
        xs, ys, sub = x[:, win[0], win[1]], y[:, win[0], win[1]], img[:, :, win[0], win[1]]
        # eyes (both at once through |x|): white, then pupil clipped to the eye
        ax = np.abs(xs)
        eye_h = t.eye_h * np.clip(1.0 + prof * eye_open, 0.15, 2.2)
        r_eye = np.sqrt(((ax - t.eye_x) / t.eye_w) ** 2 + ((ys - t.eye_y) / eye_h) ** 2)
        eye_alpha = _soft((r_eye - 1) * np.minimum(t.eye_w, eye_h), px)
        _blend(sub, eye_alpha, (240, 240, 240))
        r_pupil = np.sqrt((ax - t.eye_x) ** 2 + (ys - t.eye_y) ** 2)
        _blend(sub, eye_alpha * _soft(r_pupil - 0.45 * t.eye_w, px), (25, 20, 20))
        # brows: a thick segment above each eye; positive angle lowers the inner end
        xb = ax - t.eye_x
        yb = t.eye_y - t.brow_gap - t.rest_brow - prof * (brow_raise + brow_angle * xb)
        brow = _soft(np.abs(ys - yb) - t.brow_thick / 2, px) * _soft(np.abs(xb) - t.brow_w, px)
        _blend(sub, brow, np.asarray(t.hair) * 0.45 + 15)

    reach = 0.5 * (abs(t.rest_curve) + abs(curve)) + 0.14 + 0.02
    win = pose.window(-t.mouth_w - 0.01, t.mouth_w + 0.01, t.mouth_y - reach, t.mouth_y + reach, size=S)
    if win is not None:  # mouth: curved centre line (corners up when smiling), opened by a lens-shaped gap
        xs, ys, sub = x[:, win[0], win[1]], y[:, win[0], win[1]], img[:, :, win[0], win[1]]
        inside = _soft(np.abs(xs) - t.mouth_w, px)
        shape = np.clip(1 - (xs / t.mouth_w) ** 2, 0, None)
        yc = t.mouth_y + (t.rest_curve + prof * curve) * (shape - 0.5)
        half = np.clip(0.012 + prof * opening, 0.0, 0.14) * np.sqrt(shape)
        _blend(sub, inside * _soft(np.abs(ys - yc) - half - 0.018, px), t.lips)
        _blend(sub, inside * _soft(np.abs(ys - yc) - half, px) * np.clip(half / 0.01, 0, 1), (70, 20, 25))

    img *= np.float32(1.0 + noise * 0.06 * rng.normal())
    # triangular pixel noise (sum of two uniforms, unit variance): much cheaper than Gaussian draws
    raw = np.frombuffer(rng.bytes(2 * img.size), np.uint8).reshape(2, *img.shape)
    tri = raw[0].astype(np.float32) + raw[1] - np.float32(255.0)
    img += np.float32(pixel_noise * noise / (255.0 * np.sqrt(1 / 6))) * tri
    return np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 3, 0).copy()


def _face_points(t: FaceTraits, prof: np.ndarray, *, curve: float, opening: float, brow_raise: float,
                 brow_angle: float, eye_open: float) -> np.ndarray:
    """The 68 iBUG points ``(T, 68, 2)`` in face coordinates (x right, y down, face centre at 0) of the face
    :func:`draw_face` draws, for the per-frame expression profile ``prof`` ``(T,)``."""
    p = prof[:, None]  # (T, 1)
    T = len(prof)
    pts = np.zeros((T, 68, 2))

    def put(index: range | list[int], x: np.ndarray, y: np.ndarray) -> None:
        pts[:, list(index), 0] = np.broadcast_to(x, (T, len(index)))
        pts[:, list(index), 1] = np.broadcast_to(y, (T, len(index)))

    angle = np.linspace(0.05, np.pi - 0.05, 17)  # jaw: the lower half of the face ellipse, image left to right
    put(range(0, 17), -t.face_w * np.cos(angle), t.face_h * np.sin(angle) * np.ones((T, 1)))
    # brows: xb = |x| - eye_x (> 0 outwards); iBUG runs image left to right: outer -> inner, then inner -> outer
    for points, xb, side in ((range(17, 22), np.linspace(t.brow_w, -t.brow_w, 5), -1.0),
                             (range(22, 27), np.linspace(-t.brow_w, t.brow_w, 5), 1.0)):
        put(points, side * (t.eye_x + xb), t.eye_y - t.brow_gap - t.rest_brow - p * (brow_raise + brow_angle * xb))
    nose_y = (t.eye_y + t.mouth_y) / 2
    put(range(27, 31), np.zeros(4), np.linspace(t.eye_y, nose_y + t.nose_len / 2 - 0.02, 4) * np.ones((T, 1)))
    put(range(31, 36), np.linspace(-0.04, 0.04, 5), (nose_y + t.nose_len / 2) * np.ones((T, 5)))
    eye_h = t.eye_h * np.clip(1.0 + p * eye_open, 0.15, 2.2)  # (T, 1)
    lid = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0.0, -np.pi / 3, -2 * np.pi / 3])  # corner, upper, corner, lower
    for points, centre in ((range(36, 42), -t.eye_x), (range(42, 48), t.eye_x)):
        put(points, centre + t.eye_w * np.cos(lid), t.eye_y - eye_h * np.sin(lid))

    def mouth(x: np.ndarray, gap: float, side: float) -> np.ndarray:
        shape = np.clip(1 - (x / t.mouth_w) ** 2, 0, None)
        centre = t.mouth_y + (t.rest_curve + p * curve) * (shape - 0.5)
        half = np.clip(0.012 + p * opening, 0.0, 0.14) * np.sqrt(shape)
        return centre + side * (half + gap)

    w = t.mouth_w
    upper, lower = np.linspace(-w, w, 7), np.linspace(w, -w, 7)[1:-1]
    put(range(48, 55), upper, mouth(upper, 0.018, -1.0))  # outer lips: left corner, upper lip, right corner
    put(range(55, 60), lower, mouth(lower, 0.018, 1.0))
    inner_up, inner_low = np.linspace(-0.9 * w, 0.9 * w, 5), np.linspace(w / 3, -w / 3, 3)
    put(range(60, 65), inner_up, mouth(inner_up, 0.0, -1.0))
    put(range(65, 68), inner_low, mouth(inner_low, 0.0, 1.0))
    return pts


def face_landmarks(traits: FaceTraits, state: np.ndarray, rng: np.random.Generator, *, num_frames: int,
                   image_size: int = 256, signal: float = 1.0, noise: float = 1.0,
                   point_noise: float = 0.004) -> np.ndarray:
    """The 68 2-D landmarks (pixels, OpenFace/iBUG order) a tracker would return on a clip of the face that
    :func:`draw_face` renders: the speaker's geometry moved by the clip's expression (read from ``state`` with
    its own noise), the expression's temporal profile, head-pose jitter and per-point tracking noise
    (``point_noise`` face units at ``noise=1``). Returns float32 ``(num_frames, 68, 2)``."""
    curve, opening, brow_raise, brow_angle, eye_open = expression_parameters(state, rng, signal, noise)
    prof = expression_profile(num_frames, rng)
    pose = random_pose(num_frames, rng, noise)
    pts = _face_points(traits, prof, curve=curve, opening=opening, brow_raise=brow_raise, brow_angle=brow_angle,
                       eye_open=eye_open)
    pts = pts + noise * point_noise * rng.standard_normal(pts.shape)
    x, y = pts[..., 0], pts[..., 1]
    cos, sin = np.cos(pose.theta[:, :, 0]), np.sin(pose.theta[:, :, 0])
    scale, dx, dy = pose.scale[:, :, 0], pose.dx[:, :, 0], pose.dy[:, :, 0]
    u = scale * (x * cos - y * sin) + dx
    v = scale * (x * sin + y * cos) + dy
    return np.stack([(u + 1.0) * image_size / 2.0 - 0.5, (v + 1.0) * image_size / 2.0 - 0.5], -1).astype(np.float32)
