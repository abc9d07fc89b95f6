"""Face landmarks (478 points with the irises) and person segmentation from mediapipe 0.10.14, whose wheel
ships both models (``mediapipe/modules/*/*.tflite``): nothing is downloaded.

Landmarks are returned in continuous pixel coordinates (mediapipe's normalised ``x * W``, ``y * H``; pixel
index ``i`` covers ``[i, i + 1)``). mediapipe names the eyes from the **subject's** side, as eyefast does:
its "left" eye (contour :data:`LEFT_EYE`, iris :data:`LEFT_IRIS`) is the subject's left eye, seen on the
viewer's right in a frontal photo (``tests/test_prepare.py`` checks it on a photo).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .common import require

#: eyelid contours, in order around the eye (upper lid from the outer corner, then the lower lid back)
LEFT_EYE = [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]
RIGHT_EYE = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]
#: iris centre, then its boundary points towards image +x, up, -x, down (in an upright frontal face)
LEFT_IRIS = [473, 474, 475, 476, 477]
RIGHT_IRIS = [468, 469, 470, 471, 472]
#: the 4 eye landmarks per eye that become ``left_eye_ldm`` / ``right_eye_ldm``: the iris centre and the
#: iris boundary at its two sides and at its bottom (the upper lid often covers the top)
LEFT_LDM = [473, 474, 476, 477]
RIGHT_LDM = [468, 469, 471, 472]
#: the face outline, in order (forehead at 10, chin at 152)
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
#: eyebrow outlines (lower edge from the outer end, then the upper edge back)
LEFT_BROW = [276, 283, 282, 295, 285, 336, 296, 334, 293, 300]
RIGHT_BROW = [46, 53, 52, 65, 55, 107, 66, 105, 63, 70]
#: eye aspect ratio: (corner, corner, upper, lower, upper, lower) per eye
EAR_LEFT = (263, 362, 387, 373, 385, 380)
EAR_RIGHT = (33, 133, 160, 144, 158, 153)
#: the anchors of the head frame: outer/inner eye corners (right, left), nose tip, chin
ANCHORS = {"right_eye_outer": 33, "right_eye_inner": 133, "left_eye_inner": 362, "left_eye_outer": 263,
           "nose_tip": 1, "chin": 152}
N_LANDMARKS = 478


def _quiet():
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class FaceLandmarks:
    """mediapipe's face mesh with iris refinement on single images (``with FaceLandmarks() as fl: fl(img)``)."""

    def __init__(self, min_confidence: float = 0.5):
        _quiet()
        mp = require("mediapipe", "face landmarks")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                       refine_landmarks=True, min_detection_confidence=min_confidence)

    def __call__(self, img: np.ndarray):
        """``img`` uint8 RGB ``[H, W, 3]`` -> ``[478, 2]`` float64 landmarks, or None when no face is found."""
        H, W = img.shape[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self._fm.process(np.ascontiguousarray(img[..., :3]))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        return np.array([[p.x * W, p.y * H] for p in lm], np.float64)

    def close(self):
        self._fm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PersonSegmentation:
    """mediapipe's selfie (person) segmentation: ``seg(img)`` -> ``[H, W]`` float32 foreground in 0..1."""

    def __init__(self):
        _quiet()
        mp = require("mediapipe", "person segmentation")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._ss = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self._ss.process(np.ascontiguousarray(img[..., :3]))
        return np.asarray(res.segmentation_mask, np.float32)

    def close(self):
        self._ss.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def eye_aspect_ratio(lm: np.ndarray) -> float:
    """The smaller eye aspect ratio of the two eyes: (two lid openings) / (2 x corner distance); about 0.25-0.35
    for an open eye, under 0.1 for a closed one."""
    out = []
    for c0, c1, u0, l0, u1, l1 in (EAR_LEFT, EAR_RIGHT):
        w = np.linalg.norm(lm[c0] - lm[c1])
        h = np.linalg.norm(lm[u0] - lm[l0]) + np.linalg.norm(lm[u1] - lm[l1])
        out.append(h / max(2.0 * w, 1e-9))
    return float(min(out))


def fill_polygon(shape, poly: np.ndarray, supersample: int = 4) -> np.ndarray:
    """Bool ``[H, W]``: pixels whose centre lies inside the polygon ``[N, 2]`` (continuous pixel coordinates),
    anti-aliased by ``supersample`` and thresholded at half coverage."""
    from PIL import Image, ImageDraw

    H, W = shape
    s = supersample
    canvas = Image.new("L", (W * s, H * s), 0)
    pts = [(float(x) * s - 0.5, float(y) * s - 0.5) for x, y in np.asarray(poly)]
    if len(pts) >= 3 and np.isfinite(np.asarray(pts)).all():
        ImageDraw.Draw(canvas).polygon(pts, fill=255)
    a = np.asarray(canvas, np.float32).reshape(H, s, W, s).mean(axis=(1, 3))
    return a >= 127.5


def eye_masks(shape, lm: np.ndarray):
    """``(left, right)`` bool ``[H, W]``: the visible eyeball of each eye, inside its eyelid contour."""
    return fill_polygon(shape, lm[LEFT_EYE]), fill_polygon(shape, lm[RIGHT_EYE])
