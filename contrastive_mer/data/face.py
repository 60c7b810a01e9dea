"""Face cropping for video frames: detect the largest face, crop a square around it, resize.

Two detectors: OpenCV's Haar cascade (``backend="haar"``, always available with opencv-python-headless) and
MTCNN from ``facenet_pytorch`` (``backend="mtcnn"``, optional; its weights ship inside the package, nothing is
downloaded). When no face is found the image is centre-cropped instead and the fallback is counted, so a run
can report how often the face crop actually worked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, exclusive end)

MTCNN_INSTALL = "pip install --no-deps facenet-pytorch"


def _cv2() -> Any:
    """OpenCV, imported on first use (the ``face`` extra: opencv-python-headless)."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError("face cropping and image resizing need OpenCV; install it with "
                          "`pip install opencv-python-headless`") from err
    return cv2


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 image (area filter when shrinking, bilinear when enlarging)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(image)
    cv2 = _cv2()
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side of ``image`` to ``size`` and cut the central ``size x size`` square."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    resized = resize_image(image, nw, nh)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(resized[y0:y0 + size, x0:x0 + size])


def square_box(box: Box, margin: float, width: int, height: int) -> Box:
    """A square around ``box``, enlarged by ``margin`` x the face size on every side, kept inside the image."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    side = int(round(min(side, width, height)))
    left = int(round(cx - side / 2.0))
    top = int(round(cy - side / 2.0))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, left + side, top + side


class FaceCropper:
    """Crop the largest face of an RGB image to a square of a given size.

    Attributes:
        calls: images processed by :meth:`crop`.
        fallbacks: images where no face was found and a centre crop was returned instead.
    """

    def __init__(self, backend: str = "haar", margin: float = 0.2, min_face: float = 0.1,
                 mtcnn_threshold: float = 0.9) -> None:
        """Args:
            backend: ``"haar"`` (OpenCV cascade) or ``"mtcnn"`` (needs ``facenet_pytorch``).
            margin: extra border around the detected face, as a fraction of the face size per side.
            min_face: smallest face side accepted, as a fraction of the image's shorter side.
            mtcnn_threshold: minimum MTCNN face probability.
        """
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if not 0 < min_face <= 1:
            raise ValueError(f"min_face must be in (0, 1], got {min_face}")
        self.backend = backend
        self.margin = float(margin)
        self.min_face = float(min_face)
        self.mtcnn_threshold = float(mtcnn_threshold)
        self.calls = 0
        self.fallbacks = 0
        if backend not in ("haar", "mtcnn"):
            raise ValueError(f"unknown face backend {backend!r}; expected 'haar' or 'mtcnn'")
        self._detector: Any = self._load_detector()

    def _load_detector(self) -> Any:
        if self.backend == "haar":
            cv2 = _cv2()
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise RuntimeError(f"cannot load the Haar face cascade {path}")
            return cascade
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            if err.name not in (None, "facenet_pytorch"):  # installed, but one of its imports is missing
                raise ImportError(f"face backend 'mtcnn': facenet_pytorch failed to import ({err}); "
                                  f"install the missing package (facenet_pytorch imports `requests`) "
                                  f"or use backend='haar'") from err
            raise ImportError(f"face backend 'mtcnn' needs facenet_pytorch, which is not installed; "
                              f"install it with `{MTCNN_INSTALL}` (it also imports `requests`) "
                              f"or use backend='haar'") from err
        return MTCNN(keep_all=True, device="cpu", post_process=False)

    def __getstate__(self) -> dict[str, Any]:  # the OpenCV detector cannot be pickled: rebuilt on load
        return {k: v for k, v in self.__dict__.items() if k != "_detector"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._detector = self._load_detector()

    def detect(self, image: np.ndarray) -> Box | None:
        """The box ``(x0, y0, x1, y1)`` of the largest face in an ``(H, W, 3)`` uint8 RGB image, or None."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        h, w = image.shape[:2]
        min_side = max(12, int(self.min_face * min(h, w)))
        boxes: list[Box] = []
        if self.backend == "haar":
            cv2 = _cv2()
            gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
            found = self._detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                                    minSize=(min_side, min_side))
            boxes = [(int(x), int(y), int(x + bw), int(y + bh)) for x, y, bw, bh in found]
        else:
            found, probs = self._detector.detect(image)
            if found is not None:
                for (x0, y0, x1, y1), p in zip(found, probs, strict=True):
                    x0, y0 = max(0, int(x0)), max(0, int(y0))
                    x1, y1 = min(w, int(round(x1))), min(h, int(round(y1)))
                    if p is not None and p >= self.mtcnn_threshold and min(x1 - x0, y1 - y0) >= min_side:
                        boxes.append((x0, y0, x1, y1))
        if not boxes:
            return None
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))

    def crop(self, image: np.ndarray, size: int) -> np.ndarray:
        """The face of ``image`` as a ``(size, size, 3)`` uint8 square (centre crop when no face is found)."""
        self.calls += 1
        box = self.detect(image)
        if box is None:
            self.fallbacks += 1
            return center_crop(image, size)
        h, w = image.shape[:2]
        x0, y0, x1, y1 = square_box(box, self.margin, w, h)
        return resize_image(np.ascontiguousarray(image[y0:y1, x0:x1]), size, size)

    def crop_frames(self, frames: np.ndarray, size: int) -> np.ndarray:
        """Face-crop every frame of ``(T, H, W, 3)`` frames -> ``(T, size, size, 3)``."""
        return np.stack([self.crop(f, size) for f in frames]) if len(frames) else \
            np.zeros((0, size, size, 3), np.uint8)

    @property
    def fallback_rate(self) -> float:
        """Fraction of processed images that fell back to a centre crop (0 before any call)."""
        return self.fallbacks / self.calls if self.calls else 0.0

    def __repr__(self) -> str:
        return (f"FaceCropper(backend={self.backend!r}, margin={self.margin}, calls={self.calls}, "
                f"fallbacks={self.fallbacks})")
