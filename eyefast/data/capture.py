"""Loading a CoRA capture folder (docs/method.md section 1): cameras, images, masks, rays.

Folder layout::

    <capture>/transforms.json   (or transforms_aligned.json)
    <capture>/image/ mask/ hair_mask/ leye_mask/ reye_mask/ specular_bfm/

Conventions (docs/method.md section 1):

* frames are sorted by ``file_path``; frame ``i`` is validation when ``i % 10 == 0``.
* ``transforms.json`` holds NeRF/OpenGL camera-to-world matrices; they are converted
  to eyefast's world/camera convention: new rows = (old row 1, old row 2, old row 0)
  of the 3x4 part, columns 1 and 2 negated (so the camera frame is x right, y down,
  z forward), translation permuted with the rows.  ``transforms_aligned.json`` is
  taken as is (already converted).  ``transforms.json`` wins when both exist.
* pixel ``(x, y)`` (column, row; integer indices) has the camera-space direction
  ``((x - cx + 0.5)/fl_x, (y - cy + 0.5)/fl_y, 1)``, rotated by the converted c2w and
  normalised; the origin is the camera centre.  :func:`Capture.project` is the
  inverse: it returns continuous coordinates whose integer part is the pixel index.
* ``file_path`` may be ``image/00000.png``, ``./image/00000``, ``00000`` or
  ``00000.png``: the frame name is the base name without extension; the image is
  looked up as given, then in ``image/`` with the given extension or, without one,
  ``.png``, ``.jpg``, ``.jpeg``.  Masks are looked up by frame name in their
  folders (same extensions).
* images keep 8 bits per channel in memory (uint8: ~10.4 MB per 1920x1080 frame with
  its five masks, so 300 frames take ~3.1 GB); they become linear floats
  (``(v / 255) ** gamma``) only when sampled.
* masks: first channel, 0..1 (``specular_bfm``: mean of the colour channels). A mask image whose
  maximum is 1 (an integer image stored as 0/1, as segmentation tools often write them) is read as
  0/255, with one warning per mask folder.
  ``mask`` is required; ``hair_mask``, ``leye_mask``, ``reye_mask`` and
  ``specular_bfm`` are optional: a missing folder or file gives one warning per
  kind and zeros, as CoRA does.
* ``downscale=s`` (integer) area-averages images and masks by ``s`` (cropping the
  right/bottom remainder) and divides fl_x, fl_y, cx, cy by ``s``; this keeps the
  pixel convention exact.

Errors (missing ``transforms.json``, unreadable or wrongly sized image, malformed or
non-finite matrices, ...) are :class:`CaptureError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import torch

__all__ = [
    "CaptureError",
    "Capture",
    "MASK_KINDS",
    "OPTIONAL_MASKS",
    "nerf_to_cora",
    "cora_to_nerf",
    "frame_name",
    "shrink_hair",
]

MASK_KINDS = ("mask", "hair_mask", "leye_mask", "reye_mask", "specular_bfm")
#: the largest image side transforms.json may give (w, h), far above any phone camera
MAX_IMAGE_SIDE = 16384
OPTIONAL_MASKS = ("hair_mask", "leye_mask", "reye_mask", "specular_bfm")
_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


class CaptureError(ValueError):
    """A capture folder is missing a file or holds malformed data (message names the file)."""


# --------------------------------------------------------------------------- cameras
def nerf_to_cora(m: np.ndarray) -> np.ndarray:
    """Convert NeRF/OpenGL camera-to-world matrices to eyefast's convention.

    Args:
        m: ``[..., 4, 4]`` (or ``[..., 3, 4]``) camera-to-world, NeRF convention.

    Returns:
        ``[..., 4, 4]``: rows 0,1,2 of the 3x4 part taken from old rows 1,2,0; then
        columns 1 and 2 negated; last row ``[0, 0, 0, 1]``.
    """
    m = np.asarray(m, dtype=np.float64)
    out = np.zeros(m.shape[:-2] + (4, 4))
    out[..., :3, :] = m[..., [1, 2, 0], :4]
    out[..., :3, 1:3] *= -1.0
    out[..., 3, 3] = 1.0
    return out


def cora_to_nerf(c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`nerf_to_cora`: ``[..., 4, 4] -> [..., 4, 4]``."""
    c = np.asarray(c, dtype=np.float64)
    out = np.zeros(c.shape[:-2] + (4, 4))
    t = c[..., :3, :4].copy()
    t[..., :, 1:3] *= -1.0
    out[..., [1, 2, 0], :] = t
    out[..., 3, 3] = 1.0
    return out


def frame_name(file_path: str) -> str:
    """Frame name from a transforms ``file_path``: base name without image extension."""
    base = os.path.basename(file_path.replace("\\", "/"))
    stem, ext = os.path.splitext(base)
    return stem if ext in _EXTS else base


def _find_file(root: str, folder: str, name: str, given: str | None = None) -> str | None:
    cands = []
    if given is not None:
        g = given.replace("\\", "/")
        cands.append(os.path.join(root, g))
        ext = os.path.splitext(g)[1]
        if ext not in _EXTS:
            cands += [os.path.join(root, g + e) for e in _EXTS]
        else:
            cands.append(os.path.join(root, folder, os.path.basename(g)))
    cands += [os.path.join(root, folder, name + e) for e in _EXTS]
    for c in cands:
        if os.path.isfile(c):
            return os.path.normpath(c)
    return None


def unreadable_image(path: str, err: BaseException, what: str = "image") -> str:
    """The message for an image file imageio could not decode: its own reason, unless that is only a
    plugin suggestion (imageio answers a corrupt PNG with "pip install imageio[pyav]")."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    if size == 0:
        return f"{what} '{path}' is empty (0 bytes)"
    reason = " ".join(str(err).split())
    if not reason or "pip install" in reason or "backend" in reason.lower():
        reason = "the file is corrupt, truncated or not an image (PNG or JPEG)"
    return f"cannot read {what} '{path}': {reason}"


def _read_image(path: str) -> np.ndarray:
    import imageio.v3 as iio

    try:
        with warnings.catch_warnings():  # imageio's plugin probing warns on bad files
            warnings.simplefilter("ignore", DeprecationWarning)
            img = np.asarray(iio.imread(path))
    except Exception as e:  # imageio raises many kinds
        raise CaptureError(unreadable_image(path, e)) from None
    if img.ndim not in (2, 3):
        raise CaptureError(f"image '{path}' has unsupported shape {img.shape}")
    return img


def binary_mask_levels(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """A mask stored as 0/1 (an integer image whose maximum is 1, as segmentation tools often write them)
    -> 0/255 uint8, and True; any other image unchanged, and False."""
    if img.dtype != bool and np.issubdtype(img.dtype, np.integer) and img.size and int(img.max()) == 1:
        return (img == 1).astype(np.uint8) * 255, True
    return img, False


def _to_unit_uint8(img: np.ndarray, path: str) -> np.ndarray:
    """Any integer/float image -> uint8 (0..255) of the same layout."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    if np.issubdtype(img.dtype, np.floating):
        return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise CaptureError(f"image '{path}' has unsupported dtype {img.dtype}")


def _downscale(t: torch.Tensor, s: int) -> torch.Tensor:
    """[H, W, C] uint8 -> area-averaged [H//s, W//s, C] uint8."""
    if s == 1:
        return t
    H, W, C = t.shape
    h, w = H // s, W // s
    t = t[: h * s, : w * s].reshape(h, s, w, s, C).float().mean(dim=(1, 3))
    return t.round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- capture
class Capture:
    """A CoRA capture folder loaded into memory.

    Args:
        path: the capture folder, or a ``transforms*.json`` file inside it.
        split: ``"train"`` (frames with ``i % 10 != 0``), ``"val"`` (``i % 10 == 0``)
            or ``"all"``; only this split's frames are loaded.
        device: where tensors live (images stay uint8 there).
        downscale: integer image downscale factor (>= 1).
        gamma: sRGB-ish to linear exponent (config ``light.gamma``).
        pixels: load the images and masks (False: the cameras alone, nothing decoded; ``images``,
            ``masks`` and ``image_paths`` are then None).

    Attributes:
        H, W: image size after downscale.  n_frames: frames in this split.
        K: ``[3, 3]`` float32 intrinsics (``fl_x, fl_y, cx, cy`` after downscale).
        fl_x, fl_y, cx, cy: the same as floats.
        c2w: ``[F, 4, 4]`` float32 converted camera-to-world (x right, y down, z forward).
        cam_centers: ``[F, 3]``.
        image_names: frame names (file base names without extension), sorted.
        frame_ids: ``[F]`` long (on ``device``), index of each frame in the full sorted list.
        images: ``[F, H, W, 3]`` uint8 (sRGB-ish).
        masks: dict kind -> ``[F, H, W]`` uint8 (0..255 for 0..1), kinds :data:`MASK_KINDS`.
        transforms_path: the JSON file read.  converted: False for ``transforms_aligned.json``.
    """

    def __init__(self, path, split: str = "train", device="cpu", downscale: int = 1, gamma: float = 2.2,
                 pixels: bool = True):
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if not isinstance(downscale, int) or isinstance(downscale, bool) or downscale < 1:
            raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
        path = os.fspath(path)
        if os.path.isfile(path):
            tf_path = path
            root = os.path.dirname(os.path.abspath(path))
        else:
            root = os.path.abspath(path)
            if not os.path.isdir(root):
                raise CaptureError(f"capture folder '{root}' does not exist")
            tf_path = os.path.join(root, "transforms.json")
            if not os.path.isfile(tf_path):
                alt = os.path.join(root, "transforms_aligned.json")
                if not os.path.isfile(alt):
                    raise CaptureError(
                        f"missing camera file '{tf_path}' (nor transforms_aligned.json) in capture folder '{root}'"
                    )
                tf_path = alt
        self.root = root
        self.transforms_path = tf_path
        self.converted = os.path.basename(tf_path) != "transforms_aligned.json"
        self.split = split
        self.device = torch.device(device)
        self.gamma = float(gamma)
        self.downscale = downscale

        meta = self._read_meta(tf_path)
        frames = sorted(meta["frames"], key=lambda f: f["file_path"])
        all_ids = list(range(len(frames)))
        if split == "train":
            ids = [i for i in all_ids if i % 10 != 0]
        elif split == "val":
            ids = [i for i in all_ids if i % 10 == 0]
        else:
            ids = all_ids
        if not ids:
            raise CaptureError(f"'{tf_path}': split '{split}' has no frames ({len(frames)} frames in total)")
        self.frame_ids = torch.tensor(ids, dtype=torch.long)
        frames = [frames[i] for i in ids]
        self.image_names = [frame_name(f["file_path"]) for f in frames]
        self.n_frames = len(frames)

        mats = np.stack([self._matrix(f, tf_path) for f in frames])
        c2w = nerf_to_cora(mats) if self.converted else mats
        if not np.isfinite(c2w).all():  # pragma: no cover - caught per frame above
            raise CaptureError(f"'{tf_path}': non-finite camera matrix")

        W0, H0 = meta["w"], meta["h"]
        s = downscale
        self.W, self.H = W0 // s, H0 // s
        if self.W < 1 or self.H < 1:
            raise ValueError(f"downscale {s} is larger than the image size {W0}x{H0}")
        self.fl_x, self.fl_y = meta["fl_x"] / s, meta["fl_y"] / s
        self.cx, self.cy = meta["cx"] / s, meta["cy"] / s
        self.K = torch.tensor(
            [[self.fl_x, 0.0, self.cx], [0.0, self.fl_y, self.cy], [0.0, 0.0, 1.0]], dtype=torch.float32
        )
        self.c2w64 = torch.from_numpy(c2w)
        self.c2w = self.c2w64.float().to(self.device)
        self.cam_centers = self.c2w[:, :3, 3].contiguous()
        self.w2c = torch.linalg.inv(self.c2w64).float().to(self.device)

        if pixels:
            self._load_pixels(frames, W0, H0)
        else:  # the cameras alone (tools that only project or cast rays): no image is decoded
            self.images, self.masks, self.image_paths = None, None, None
        self.K = self.K.to(self.device)
        self.frame_ids = self.frame_ids.to(self.device)

    @classmethod
    def from_config(cls, cfg, split: str = "train", device=None, downscale: int = 1) -> "Capture":
        """Load the capture named by an :class:`eyefast.config.Config`.

        Uses ``cfg.data.meta_path`` and ``cfg.light.gamma``; ``device`` defaults to
        ``cfg.device`` (an integer ``n`` means ``"cuda:n"``).
        """
        if device is None:
            from ..core.device import parse_device

            device = parse_device(cfg.device)
        return cls(cfg.data.meta_path, split=split, device=device, downscale=downscale, gamma=cfg.light.gamma)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _read_meta(tf_path: str) -> dict:
        try:
            with open(tf_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CaptureError(f"cannot parse camera file '{tf_path}': {e}") from None
        if not isinstance(meta, dict):
            raise CaptureError(f"'{tf_path}': expected a JSON object at the top level")
        for k in ("w", "h", "fl_x", "fl_y"):
            if k not in meta:
                raise CaptureError(f"'{tf_path}': missing key '{k}'")
        out = {}
        for k in ("w", "h"):
            v = meta[k]
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_IMAGE_SIDE:
                raise CaptureError(f"'{tf_path}': key '{k}' (image {'width' if k == 'w' else 'height'} in pixels) "
                                   f"must be an integer from 1 to {MAX_IMAGE_SIDE}, got {meta[k]!r}")
            out[k] = v
        for k, default in (("fl_x", None), ("fl_y", None), ("cx", out["w"] / 2), ("cy", out["h"] / 2)):
            v = meta.get(k, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CaptureError(f"'{tf_path}': key '{k}' must be a finite number, got {v!r}")
            if k.startswith("fl") and v <= 0:
                raise CaptureError(f"'{tf_path}': key '{k}' must be > 0, got {v!r}")
            out[k] = float(v)
        frames = meta.get("frames")
        if not isinstance(frames, list) or not frames:
            raise CaptureError(f"'{tf_path}': 'frames' must be a non-empty list")
        for i, fr in enumerate(frames):
            if not isinstance(fr, dict) or not isinstance(fr.get("file_path"), str):
                raise CaptureError(f"'{tf_path}': frame {i} has no string 'file_path'")
            if "transform_matrix" not in fr:
                raise CaptureError(f"'{tf_path}': frame {i} ('{fr['file_path']}') has no 'transform_matrix'")
        out["frames"] = frames
        return out

    @staticmethod
    def _matrix(fr: dict, tf_path: str) -> np.ndarray:
        try:
            m = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            m = None
        if m is None or m.shape not in ((4, 4), (3, 4)):
            raise CaptureError(
                f"'{tf_path}': frame '{fr['file_path']}': transform_matrix must be a 4x4 (or 3x4) "
                f"list of numbers, got {fr['transform_matrix']!r}"[:400]
            )
        if not np.isfinite(m).all():
            raise CaptureError(f"'{tf_path}': frame '{fr['file_path']}': transform_matrix has non-finite values")
        if m.shape == (3, 4):
            m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
        if abs(np.linalg.det(m[:3, :3])) < 1e-8:
            raise CaptureError(f"'{tf_path}': frame '{fr['file_path']}': transform_matrix rotation is singular")
        return m

    def _load_pixels(self, frames, W0, H0):
        s = self.downscale
        F_, H, W = self.n_frames, self.H, self.W
        self.image_paths = []
        warned = set()
        for i, fr in enumerate(frames):
            name = self.image_names[i]
            p = _find_file(self.root, "image", name, fr["file_path"])
            if p is None:
                raise CaptureError(
                    f"missing image for frame '{fr['file_path']}' (looked for "
                    f"'{os.path.join(self.root, fr['file_path'])}' and '{os.path.join(self.root, 'image', name)}.png/.jpg'); "
                    f"listed in '{self.transforms_path}'"
                )
            self.image_paths.append(p)
            img = self._check_size(_read_image(p), p, W0, H0)
            if i == 0:  # allocated once the first image confirms transforms.json's w and h
                self.images = torch.empty((F_, H, W, 3), dtype=torch.uint8)
                self.masks = {k: torch.zeros((F_, H, W), dtype=torch.uint8) for k in MASK_KINDS}
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=-1)
            elif img.shape[-1] == 1:
                img = np.repeat(img, 3, axis=-1)
            elif img.shape[-1] >= 3:
                img = img[..., :3]
            else:
                raise CaptureError(f"image '{p}' has {img.shape[-1]} channels; expected 1, 3 or 4")
            self.images[i] = _downscale(torch.from_numpy(np.ascontiguousarray(_to_unit_uint8(img, p))), s)
            for kind in MASK_KINDS:
                mp = _find_file(self.root, kind, name)
                if mp is None:
                    if kind == "mask":
                        raise CaptureError(
                            f"missing foreground mask '{os.path.join(self.root, 'mask', name)}.png' for frame '{name}'"
                        )
                    if kind not in warned:
                        warned.add(kind)
                        warnings.warn(
                            f"capture '{self.root}': no {kind} for frame '{name}' "
                            f"('{os.path.join(self.root, kind, name)}.png'); using zeros",
                            stacklevel=3,
                        )
                    continue
                m = self._check_size(_read_image(mp), mp, W0, H0)
                if kind != "specular_bfm":  # a mask: its first channel; 0/1-coded masks read as 0/255
                    m = m[..., 0] if m.ndim == 3 else m
                    m, binary = binary_mask_levels(m)
                    if binary and ("01", kind) not in warned:
                        warned.add(("01", kind))
                        warnings.warn(
                            f"capture '{self.root}': the masks in '{os.path.join(self.root, kind)}' hold 0/1 "
                            "values (maximum 1), not 0/255; reading 1 as foreground (255)", stacklevel=3)
                m = _to_unit_uint8(m, mp)
                if m.ndim == 3:  # specular_bfm: the mean of the colour channels
                    m = np.round(m[..., : min(3, m.shape[-1])].astype(np.float32).mean(-1)).astype(np.uint8)
                self.masks[kind][i] = _downscale(torch.from_numpy(np.ascontiguousarray(m))[..., None], s)[..., 0]
        self.images = self.images.to(self.device)
        self.masks = {k: v.to(self.device) for k, v in self.masks.items()}

    @staticmethod
    def _check_size(img, path, W0, H0):
        if img.shape[0] != H0 or img.shape[1] != W0:
            raise CaptureError(
                f"image '{path}' is {img.shape[1]}x{img.shape[0]} (w x h) but transforms.json says {W0}x{H0}"
            )
        return img

    # ------------------------------------------------------------------ geometry
    def _frame_index(self, frame, check: bool = True) -> torch.Tensor:
        if torch.is_tensor(frame) and not check:
            return frame.to(device=self.device, dtype=torch.long)
        f = torch.as_tensor(frame, dtype=torch.long, device=self.device)
        if ((f < 0) | (f >= self.n_frames)).any():
            raise IndexError(f"frame index out of range 0..{self.n_frames - 1}: {frame}")
        return f

    def rays(self, frame_idx, pixels_xy=None, check: bool = True):
        """Camera rays of one frame.

        Args:
            frame_idx: int (index into this split), or a ``[M]`` long tensor (one frame per pixel).
            pixels_xy: ``[M, 2]`` pixel coordinates (x = column, y = row; integer
                indices or continuous values, the +0.5 centre offset is added), or
                None for every pixel in row-major order (``M = H * W``).
            check: check that the frame indices are in range (reads a flag back from the device: a
                host sync on a GPU; the trainer's own random indices skip it).

        Returns:
            ``(origins [M, 3], dirs [M, 3])`` float32 on the capture's device; dirs unit.
        """
        f = self._frame_index(frame_idx, check)
        if pixels_xy is None:
            if f.dim() != 0:
                raise ValueError("rays: pixels_xy=None needs a single frame index")
            ys, xs = torch.meshgrid(
                torch.arange(self.H, device=self.device), torch.arange(self.W, device=self.device), indexing="ij"
            )
            pixels_xy = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)
        pix = torch.as_tensor(pixels_xy, device=self.device).float()
        if pix.dim() != 2 or pix.shape[-1] != 2:
            raise ValueError(f"rays: pixels_xy must be [M, 2], got {tuple(pix.shape)}")
        d_cam = torch.stack(
            [
                (pix[:, 0] - self.cx + 0.5) / self.fl_x,
                (pix[:, 1] - self.cy + 0.5) / self.fl_y,
                torch.ones_like(pix[:, 0]),
            ],
            -1,
        )
        R = self.c2w[f, :3, :3]
        if f.dim() == 0:
            d = d_cam @ R.T
            o = self.cam_centers[f].expand_as(d)
        else:
            d = torch.einsum("mij,mj->mi", R, d_cam)
            o = self.cam_centers[f]
        return o.contiguous(), torch.nn.functional.normalize(d, dim=-1)

    def world_to_camera(self, points, frame):
        """World points ``[P, 3]`` -> camera-space points ``[P, 3]`` (x right, y down, z forward).

        ``frame``: int, or ``[P]`` long tensor (one frame per point).
        """
        f = self._frame_index(frame)
        pts = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        w2c = self.w2c[f]
        if f.dim() == 0:
            return pts @ w2c[:3, :3].T + w2c[:3, 3]
        return torch.einsum("pij,pj->pi", w2c[:, :3, :3], pts) + w2c[:, :3, 3]

    def project(self, points, frame):
        """Project world points ``[P, 3]`` to pixel coordinates ``[P, 2]`` (x, y).

        Continuous coordinates in which pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``:
        a point on the ray of pixel index ``(i, j)`` (see :meth:`rays`) projects to
        ``(i + 0.5, j + 0.5)``, so ``floor`` of the result is the pixel index.
        ``frame``: int or ``[P]`` long tensor.  Points behind the camera get NaN.
        """
        pc = self.world_to_camera(points, frame)
        z = pc[:, 2:3]
        xy = pc[:, :2] / z
        px = xy[:, 0:1] * self.fl_x + self.cx
        py = xy[:, 1:2] * self.fl_y + self.cy
        out = torch.cat([px, py], -1)
        return torch.where(z > 0, out, torch.full_like(out, float("nan")))

    # ------------------------------------------------------------------ pixels
    def linear_rgb(self, u8: torch.Tensor) -> torch.Tensor:
        """uint8 sRGB-ish ``[..., 3]`` -> linear float32 ``(v/255) ** gamma``."""
        return (u8.float() / 255.0) ** self.gamma

    def full_image(self, i: int, linear: bool = False) -> torch.Tensor:
        """Frame ``i`` as float32 ``[H, W, 3]`` in 0..1 (sRGB-ish, or linear if ``linear``)."""
        img = self.images[int(self._frame_index(i))]
        return self.linear_rgb(img) if linear else img.float() / 255.0

    def full_mask(self, i: int, kind: str = "mask") -> torch.Tensor:
        """Mask ``kind`` of frame ``i`` as float32 ``[H, W]`` in 0..1."""
        if kind not in self.masks:
            raise KeyError(f"unknown mask kind {kind!r}; kinds: {', '.join(MASK_KINDS)}")
        return self.masks[kind][int(self._frame_index(i))].float() / 255.0

    def gather(self, frame_idx: torch.Tensor, pixel_xy: torch.Tensor, check: bool = True) -> dict:
        """Rays and pixel values at given pixels.

        Args:
            frame_idx: ``[n]`` long, frame indices (this split).
            pixel_xy: ``[n, 2]`` long, integer pixel coordinates (x, y).
            check: check the frame indices (see :meth:`rays`).

        Returns:
            dict ``rays_o [n,3], rays_d [n,3], rgb [n,3] (linear), mask, hair_mask,
            leye_mask, reye_mask, specular_bfm ([n] float in 0..1), frame_idx [n],
            pixel_xy [n,2]``.
        """
        f = frame_idx.to(self.device).long()
        xy = pixel_xy.to(self.device).long()
        o, d = self.rays(f, xy, check=check)
        out = {"rays_o": o, "rays_d": d, "rgb": self.linear_rgb(self.images[f, xy[:, 1], xy[:, 0]])}
        for k in MASK_KINDS:
            out[k] = self.masks[k][f, xy[:, 1], xy[:, 0]].float() / 255.0
        out["frame_idx"] = f
        out["pixel_xy"] = xy
        return out

    def sample_batch(self, n_rays: int, generator: torch.Generator | None = None) -> dict:
        """Uniformly random pixels of this split's frames (see :meth:`gather` for keys).

        ``generator``: a ``torch.Generator`` (for reproducibility) on the capture's device: the indices
        are drawn where the pixels are (a CPU generator's draws would be copied over, a blocking copy
        on a GPU).
        """
        dev = self.device if generator is None else generator.device
        f = torch.randint(0, self.n_frames, (n_rays,), generator=generator, device=dev)
        x = torch.randint(0, self.W, (n_rays,), generator=generator, device=dev)
        y = torch.randint(0, self.H, (n_rays,), generator=generator, device=dev)
        return self.gather(f, torch.stack([x, y], -1), check=False)

    def with_cameras(self, c2w: torch.Tensor) -> "Capture":
        """This capture with other cameras (``c2w [F, 4, 4]``, converted convention, e.g. refined ones): a
        shallow copy sharing the pixels."""
        import copy

        if tuple(c2w.shape) != (self.n_frames, 4, 4):
            raise ValueError(f"with_cameras: c2w must be [{self.n_frames}, 4, 4], got {tuple(c2w.shape)}")
        out = copy.copy(self)
        out.c2w64 = c2w.detach().double().cpu()
        out.c2w = out.c2w64.float().to(self.device)
        out.cam_centers = out.c2w[:, :3, 3].contiguous()
        out.w2c = torch.linalg.inv(out.c2w64).float().to(self.device)
        return out

    def write_transforms(self, path: str, c2w: torch.Tensor | None = None) -> None:
        """Writes this split's cameras (or ``c2w [F, 4, 4]``, converted convention) into a copy of the
        capture's camera file at ``path``: the same keys and frames, this split's matrices replaced (in
        the file's own convention), the other frames as they were. Atomic (temporary file, then rename)."""
        with open(self.transforms_path, encoding="utf-8") as f:
            meta = json.load(f)
        c2w = (self.c2w64 if c2w is None else c2w.detach().double().cpu()).numpy()
        mats = cora_to_nerf(c2w) if self.converted else c2w
        by_name = {n: m for n, m in zip(self.image_names, mats)}
        for fr in meta.get("frames", []):
            m = by_name.get(frame_name(fr["file_path"]))
            if m is not None:
                fr["transform_matrix"] = m.tolist()
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, path)

    def __len__(self):
        return self.n_frames

    def __repr__(self):
        return f"Capture('{self.root}', split={self.split!r}, frames={self.n_frames}, {self.W}x{self.H})"


def shrink_hair(cap: Capture, ks: int) -> None:
    """``data.dilate_ks``: hair pixels next to skin are not hair (dilates the skin mask by ks x ks and
    removes it from ``cap``'s ``hair_mask``, in place)."""
    if ks <= 1:
        return
    out = cap.masks["hair_mask"]
    for i in range(out.shape[0]):  # a frame at a time: real captures hold hundreds of 1080p masks
        mask = cap.masks["mask"][i].float() / 255.0
        hair = out[i].float() / 255.0
        skin = (mask * (1.0 - hair))[None, None]
        grown = torch.nn.functional.max_pool2d(skin, ks, stride=1, padding=ks // 2)[0, 0, : hair.shape[0], : hair.shape[1]]
        out[i] = (hair * (1.0 - grown) * 255.0).round().to(torch.uint8)
