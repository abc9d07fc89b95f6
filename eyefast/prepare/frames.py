"""Stage ``frames``: the sharpest frame of every ``--every`` from a video (or a folder of images), upright,
resized, with closed-eye and face-less frames dropped, and a foreground mask per frame.

Writes ``OUT/prepare/frames/<name>.png`` (RGB, ``--resolution`` pixels on the long side at most),
``OUT/prepare/frames_mask/<name>.png`` (foreground 0/255: mediapipe's person segmentation, or the masks
given with ``--masks``), ``OUT/prepare/frames_landmarks.npz`` (mediapipe's 478 face landmarks per kept frame,
continuous pixel coordinates, NaN where no face was found) and the record ``OUT/prepare/frames.json``.

Frame names: ``<index>`` (5 digits) of the frame in the video; a folder's images keep their file names' stems.
Sharpness is the variance of the Laplacian of the grey image at the output size. Video rotation (the
display matrix, or the older ``rotate`` tag, of phone videos) is applied, so frames are upright.
"""

from __future__ import annotations

import math
import os
import re
import subprocess

import numpy as np

from .common import (PrepareError, find_by_stem, list_images, log, new_record, progress, read_image, require,
                     staged_dirs, write_json, write_png)

VIDEO_EXTS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp")
#: a frame's eyes are closed when its eye aspect ratio is below this fraction of the median over the frames
EAR_FRACTION = 0.6
#: ... or below this value
EAR_MIN = 0.09


# --------------------------------------------------------------------------- reading
def probe_video(path: str) -> dict:
    """``{"size": (w, h) as coded, "fps", "duration", "frames" (an estimate or None), "rotation"}``;
    ``rotation`` is the display rotation, counter-clockwise degrees (a multiple of 90)."""
    ffmpeg = require("imageio_ffmpeg", f"reading the video '{path}'")
    exe = ffmpeg.get_ffmpeg_exe()
    try:
        p = subprocess.run([exe, "-hide_banner", "-i", path], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise PrepareError(f"cannot read the video '{path}': {e}") from None
    text = p.stderr
    m = re.search(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})", text)
    if m is None:
        last = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no video stream"]
        raise PrepareError(f"cannot read the video '{path}': {last[0]}")
    info = {"size": (int(m.group(1)), int(m.group(2))), "fps": None, "duration": None, "frames": None, "rotation": 0}
    f = re.search(r"(\d+(?:\.\d+)?) fps", text)
    if f:
        info["fps"] = float(f.group(1))
    d = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if d:
        info["duration"] = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3))
    if info["fps"] and info["duration"]:
        info["frames"] = int(round(info["fps"] * info["duration"]))
    r = re.search(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", text, re.IGNORECASE)
    if r:
        info["rotation"] = int(round(float(r.group(1)) / 90.0)) * 90 % 360
    else:
        r = re.search(r"rotate\s*:\s*(-?\d+)", text)
        if r:  # the old tag: clockwise degrees
            info["rotation"] = (-int(r.group(1))) % 360
    return info


def upright(img: np.ndarray, rotation: int) -> np.ndarray:
    """Applies a display rotation (counter-clockwise degrees, a multiple of 90)."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def video_frames(path: str, info: dict):
    """Yields the video's frames, upright, as uint8 ``[H, W, 3]``."""
    ffmpeg = require("imageio_ffmpeg", f"reading the video '{path}'")
    try:
        gen = ffmpeg.read_frames(path, pix_fmt="rgb24", input_params=["-noautorotate"])
        meta = gen.__next__()
        w, h = meta["size"]
        for buf in gen:
            yield upright(np.frombuffer(buf, np.uint8).reshape(h, w, 3), info["rotation"])
    except (OSError, RuntimeError, StopIteration) as e:
        raise PrepareError(f"cannot read the video '{path}': {str(e).strip().splitlines()[-1] if str(e) else e}") from None


def read_photo(path: str) -> np.ndarray:
    """An image file, turned upright by its EXIF orientation, as uint8 RGB."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGB", "L", "RGBA", "P", "I;16", "I"):
                return np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        pass
    img = read_image(path)
    return np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img


def resize_long(img: np.ndarray, long_side: int, nearest: bool = False) -> np.ndarray:
    """Resizes so that the long side is at most ``long_side`` (never enlarges)."""
    from PIL import Image

    H, W = img.shape[:2]
    s = long_side / max(H, W)
    if s >= 1.0:
        return img
    size = (max(1, int(round(W * s))), max(1, int(round(H * s))))
    return np.asarray(Image.fromarray(img).resize(size, Image.NEAREST if nearest else Image.LANCZOS))


def sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image."""
    from scipy import ndimage

    g = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(ndimage.laplace(g).var())


# --------------------------------------------------------------------------- the stage
def _select(items, every: int, show: bool, total=None):
    """The sharpest of every ``every`` consecutive ``(name, image)`` items: list of ``(name, image, sharpness)``."""
    best, out, window = None, [], None
    for i, (name, img) in enumerate(progress(items, "frames: sharpness", show, total=total)):
        w = i // every
        if w != window:
            if best is not None:
                out.append(best)
            best, window = None, w
        s = sharpness(img)
        if best is None or s > best[2]:
            best = (name, img, s)
    if best is not None:
        out.append(best)
    return out


def run(inp: str, out: str, every=None, max_frames: int = 300, resolution: int = 960, no_face: bool = False,
        masks=None, show: bool = True) -> dict:
    inp = os.path.abspath(os.fspath(inp))
    if not os.path.exists(inp):
        raise PrepareError(f"input '{inp}' does not exist (a video file, or a folder of images)")
    if resolution < 64:
        raise PrepareError(f"--resolution must be at least 64 pixels, got {resolution}")
    if max_frames < 2:
        raise PrepareError(f"--max-frames must be at least 2, got {max_frames}")
    rec = new_record("frames", {})
    if os.path.isdir(inp):
        files = list_images(inp)
        if not files:
            raise PrepareError(f"the folder '{inp}' holds no images ({', '.join(e for e in ('.png', '.jpg'))}, ...)")
        every = int(every or 1)
        total = len(files)
        if math.ceil(total / every) > max_frames:
            every = math.ceil(total / max_frames)
        items = ((os.path.splitext(f)[0], resize_long(read_photo(os.path.join(inp, f)), resolution)) for f in files)
        rec.update(kind="folder", rotation=0, fps=None, source_frames=total)
    else:
        if os.path.splitext(inp)[1].lower() not in VIDEO_EXTS:
            log.warning("'%s' does not look like a video (%s); trying to read it as one", inp, ", ".join(VIDEO_EXTS))
        info = probe_video(inp)
        every = int(every or 10)
        total = info["frames"]
        if total and math.ceil(total / every) > max_frames:
            every = math.ceil(total / max_frames)
        items = ((f"{i:05d}", resize_long(f, resolution)) for i, f in enumerate(video_frames(inp, info)))
        rec.update(kind="video", rotation=info["rotation"], fps=info["fps"], source_frames=total)
    if every < 1:
        raise PrepareError(f"--every must be at least 1, got {every}")
    chosen = _select(items, every, show, total)
    if not chosen:
        raise PrepareError(f"no frame could be read from '{inp}'")
    dropped = {}
    if len(chosen) > max_frames:  # the frame count of a video was unknown: thin out evenly
        keep = set(np.linspace(0, len(chosen) - 1, max_frames).round().astype(int).tolist())
        for i, c in enumerate(chosen):
            if i not in keep:
                dropped[c[0]] = f"over --max-frames {max_frames}"
        chosen = [c for i, c in enumerate(chosen) if i in keep]
    sizes = {c[1].shape[:2] for c in chosen}
    if len(sizes) > 1:
        raise PrepareError(f"the images of '{inp}' have different sizes ({', '.join(f'{w}x{h}' for h, w in sorted(sizes))}): "
                           "one camera is assumed; give images of one size")
    H, W = chosen[0][1].shape[:2]

    # faces: drop frames without one, and frames with closed eyes
    landmarks = np.full((len(chosen), 478, 2), np.nan)
    ear = {}
    if not no_face:
        from .face import FaceLandmarks, eye_aspect_ratio

        with FaceLandmarks() as detect:
            for i, (name, img, _) in enumerate(progress(chosen, "frames: faces", show)):
                lm = detect(img)
                if lm is not None:
                    landmarks[i] = lm
                    ear[name] = eye_aspect_ratio(lm)
        if not ear:
            raise PrepareError(
                f"no face was found in any of the {len(chosen)} frames of '{inp}': film the whole face in every frame, "
                "or prepare the capture without face landmarks with --no-face (then no eye masks, eye landmarks or "
                "hair mask; the head frame comes from the cameras)")
        thr = max(EAR_MIN, EAR_FRACTION * float(np.median(list(ear.values()))))
        for name, _, _ in chosen:
            if name not in ear:
                dropped[name] = "no face found"
            elif ear[name] < thr:
                dropped[name] = f"eyes closed (eye aspect ratio {ear[name]:.3f} < {thr:.3f})"
        rec["ear_threshold"] = thr
    keep = [i for i, c in enumerate(chosen) if c[0] not in dropped]
    if len(keep) < 2:
        raise PrepareError(f"only {len(keep)} usable frame(s) in '{inp}' (dropped: "
                           f"{', '.join(f'{k}: {v}' for k, v in list(dropped.items())[:5])}); structure from motion "
                           "needs many views of the head")

    # foreground masks
    given = os.path.abspath(masks) if masks else None
    if given and not os.path.isdir(given):
        raise PrepareError(f"--masks folder '{given}' does not exist")
    seg = None
    if given is None:
        from .face import PersonSegmentation

        seg = PersonSegmentation()
    try:
        with staged_dirs(out, ["prepare/frames", "prepare/frames_mask"]) as tmp:
            for i in progress(keep, "frames: write", show):
                name, img, _ = chosen[i]
                write_png(os.path.join(tmp["prepare/frames"], name + ".png"), img)
                if given:
                    p = find_by_stem(given, name)
                    if p is None:
                        raise PrepareError(f"--masks: no mask for frame '{name}' in '{given}' (expected {name}.png)")
                    m = read_image(p)
                    m = m[..., 0] if m.ndim == 3 else m
                    if m.shape != img.shape[:2]:
                        m = resize_long(m, max(img.shape[:2]))
                    if m.shape != img.shape[:2]:
                        raise PrepareError(f"--masks: mask '{p}' is {m.shape[1]}x{m.shape[0]}, its frame {W}x{H}")
                    fg = m >= 128
                else:
                    fg = seg(img) >= 0.5
                write_png(os.path.join(tmp["prepare/frames_mask"], name + ".png"), fg.astype(np.uint8) * 255)
            names = [chosen[i][0] for i in keep]
            np.savez(os.path.join(tmp["prepare/frames"], ".landmarks.npz"), names=np.array(names),
                     landmarks=landmarks[keep])
    finally:
        if seg is not None:
            seg.close()
    os.replace(os.path.join(out, "prepare", "frames", ".landmarks.npz"), os.path.join(out, "prepare", "frames_landmarks.npz"))
    rec.update(source=inp, every=every, resolution=resolution, size=[W, H], face=not no_face,
               masks="given" if given else "segmentation", masks_source=given,
               candidates=len(chosen) + sum(1 for v in dropped.values() if v.startswith("over")),
               frames=[chosen[i][0] for i in keep], dropped=dropped,
               sharpness={c[0]: round(c[2], 3) for c in chosen}, ear={k: round(v, 4) for k, v in ear.items()})
    write_json(os.path.join(out, "prepare", "frames.json"), rec)
    log.info("frames: kept %d of %d candidate frames (%d dropped) at %dx%d", len(keep), len(chosen), len(dropped), W, H)
    return rec
