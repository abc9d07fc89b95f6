"""Own-data step-1 tools (SPEC section 7): eye masks from painted UV masks, 3D eye landmarks from
painted UV texels, and triangulation of 2D eye landmarks.

Usage::

    eyefast tools eye-masks --capture DIR --mesh-uv mesh_uv.obj
                                      [--left-mask PNG] [--right-mask PNG] [--device cpu|cuda]
    eyefast tools uv-landmarks --image PNG --coord-map coord.npy [--json OUT]
    eyefast tools uv-landmarks --left-image PNG --right-image PNG --coord-map coord.npy
    eyefast tools triangulate --capture DIR --landmarks JSON [--json OUT]
                                        [--integer-pixel-centers]

Conventions
-----------
* World: the converted (CoRA) convention of :mod:`eyefast.data`: +y up, the face looks along +z.
  **"left" is the subject's left eye**, at +x (seen on the viewer's right); CoRA's own files may
  name the eyes by the viewer's side.
* UV: OBJ convention, ``v = 0`` is the **bottom** row of a texture image, ``v = 1`` the top
  (texel ``(i, j)``, column i and row j of an H x W PNG, has its centre at
  ``u = (i + 0.5) / W``, ``v = 1 - (j + 0.5) / H``), as in :func:`eyefast.ops.rasterize_uv`.
* Texel-to-3D map (``coord.npy``, written by the export, or by :func:`bake_coord_map`): a float
  ``[H, W, 3]`` array of world points at texel centres, in the same orientation as the texture
  PNGs (row 0 = top = v near 1); texels no face covers hold NaN (all-zero rows are also read as
  empty).
* Painted masks (``diffuse_leye_mask.png`` / ``diffuse_reye_mask.png``): an image of the UV map's
  square layout (the exported ``diffuse.png`` is N x N; any size from 16 texels, square within 2%);
  its first channel >= 0.5 (after bilinear lookup at the pixel's UV) marks the eye (0/1-coded masks
  are read as 0/255). The tool does not replace eye masks already in the output folder unless asked
  to (``overwrite``). Written eye masks: single-channel 8-bit PNGs, 0 or 255 (as :mod:`eyefast.synth` writes
  them), one per frame, named like the frame (``leye_mask/<frame>.png``, ``reye_mask/<frame>.png``).
* Painted landmarks: pure green (0, 255, 0) texels (``--tolerance`` allows JPEG-damaged ones);
  each 8-connected group of green texels is one landmark, located at the mean of its texels'
  3D points.
* 2D landmarks (``triangulate``): ``{"<image file name>": {"left_eye": [[x, y], ...],
  "right_eye": [[x, y], ...]}}``, 4 points per eye, in continuous pixel coordinates in which pixel
  index ``i`` covers ``[i, i + 1)`` (the coordinates :meth:`eyefast.data.Capture.project`
  returns; the ray through ``x`` is ``Capture.rays(pixel = x - 0.5)``). Detectors that put pixel
  centres at integers (OpenCV style) need ``--integer-pixel-centers`` (adds 0.5). An eye may be
  missing (or null) in some images; each eye needs at least 2 views. Points must lie inside the image
  (within 2% of its larger side), the two eyes of an image must differ, and an entry has no other keys.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import torch

__all__ = [
    "ToolError",
    "load_mesh_uv",
    "bake_coord_map",
    "eye_masks",
    "uv_landmarks",
    "triangulate",
    "config_lines",
    "nearest_point_to_rays",
]


class ToolError(ValueError):
    """A tool's input is missing or malformed (the message names the file or argument)."""


# --------------------------------------------------------------------------- shared helpers
def load_mesh_uv(path):
    """Reads a UV-mapped OBJ (trimesh, ``process=False``: vertices are split where a position has
    several UVs). Returns ``(verts [V, 3] float32, uvs [V, 2] float32, faces [F, 3] int64)``."""
    import trimesh

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ToolError(f"mesh file '{path}' does not exist")
    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as e:  # trimesh raises many kinds
        raise ToolError(f"cannot read mesh '{path}': {e}") from None
    uv = getattr(mesh.visual, "uv", None)
    if len(mesh.faces) == 0:
        raise ToolError(f"mesh '{path}' has no faces")
    if uv is None or len(uv) != len(mesh.vertices):
        raise ToolError(f"mesh '{path}' has no texture coordinates (vt lines): export it with its UV map")
    verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    uvs = torch.as_tensor(np.asarray(uv), dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)
    return verts, uvs, faces


def _read_image(path, what: str, mask: bool = False) -> np.ndarray:
    """An image as uint8; ``mask``: its first channel, with 0/1-coded masks read as 0/255 (and a warning)."""
    import imageio.v3 as iio

    from .capture import _to_unit_uint8, binary_mask_levels, unreadable_image

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ToolError(f"{what} '{path}' does not exist")
    try:
        img = np.asarray(iio.imread(path))
    except Exception as e:  # imageio raises many kinds
        raise ToolError(unreadable_image(path, e, what)) from None
    if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        raise ToolError(f"{what} '{path}' has unsupported shape {img.shape}")
    if mask:
        img = img[..., 0] if img.ndim == 3 else img
        img, binary = binary_mask_levels(img)
        if binary:
            logging.getLogger(__name__).warning(
                f"{what} '{path}' holds 0/1 values (maximum 1), not 0/255: reading 1 as the eye")
    try:
        return _to_unit_uint8(img, path)
    except ValueError as e:
        raise ToolError(str(e)) from None


#: painted UV masks: the UV map is square (the export's textures are N x N), so a painted mask must be
#: square to this relative tolerance, and at least this many texels per side
PAINT_ASPECT_TOLERANCE = 0.02
PAINT_MIN_SIZE = 16


def _check_paint(m: np.ndarray, path: str, what: str) -> None:
    """A painted UV mask must be square (the UV layout of the exported textures), big enough to resolve an
    eye, and hold some white texels."""
    h, w = m.shape[:2]
    if abs(w - h) > PAINT_ASPECT_TOLERANCE * max(w, h):
        raise ToolError(f"{what} '{path}' is {w}x{h} (w x h), but the UV map is square (the exported "
                        f"diffuse.png is N x N): paint on an image of the texture's layout (any size, square "
                        f"within {PAINT_ASPECT_TOLERANCE:.0%})")
    if min(w, h) < PAINT_MIN_SIZE:
        raise ToolError(f"{what} '{path}' is {w}x{h}: too small to hold an eye; paint at the texture's size "
                        f"(at least {PAINT_MIN_SIZE}x{PAINT_MIN_SIZE})")
    white = float((m >= 128).mean())
    if white == 0.0:
        raise ToolError(f"{what} '{path}' has no white texel: paint the eye white (first channel >= 0.5) on black")
    if white > 0.5:
        logging.getLogger(__name__).warning(
            f"{what} '{path}' is {white:.0%} white; an eye covers a small part of the texture: is it inverted? "
            "(paint the eye white on black)")


def bake_coord_map(verts, uvs, faces, height: int, width: int) -> np.ndarray:
    """Texel-to-3D map of a UV-mapped mesh: ``[height, width, 3]`` float32 world points at texel
    centres (PNG orientation: row 0 is the top, v near 1), NaN where no face covers the texel."""
    from ..core import ops

    verts = torch.as_tensor(verts, dtype=torch.float32)
    uvs = torch.as_tensor(uvs, dtype=torch.float32).contiguous()
    faces = torch.as_tensor(faces).contiguous()
    p2f, bary = ops.rasterize_uv(uvs, faces, height, width)
    pts = ops.interpolate(verts.contiguous(), faces, p2f, bary)
    pts[p2f < 0] = float("nan")
    return pts.cpu().numpy().astype(np.float32)


def _fmt_points(pts) -> str:
    return "[" + ", ".join("[" + ", ".join(f"{float(v):.6f}" for v in p) + "]" for p in pts) + "]"


def config_lines(result: dict) -> str:
    return "\n".join(f"{k}: {_fmt_points(result[k])}" for k in ("left_eye_ldm", "right_eye_ldm"))


# --------------------------------------------------------------------------- eye-masks
def eye_masks(capture, mesh_uv, left_mask=None, right_mask=None, out_dir=None, device="cpu",
              progress: bool = True, overwrite: bool = False) -> dict:
    """Rasterises ``mesh_uv`` in every frame of the capture, looks up the painted UV eye masks and
    writes ``<out_dir>/leye_mask/<frame>.png`` and ``<out_dir>/reye_mask/<frame>.png``.

    Args:
        capture: the capture folder (loaded with ``eyefast.data.Capture(split="all")``).
        mesh_uv: the exported UV-mapped face mesh (OBJ, world units of the capture).
        left_mask, right_mask: painted UV masks; default ``<capture>/diffuse_leye_mask.png`` and
            ``<capture>/diffuse_reye_mask.png``.
        out_dir: where the mask folders go (default: the capture folder).
        device: where to rasterise.
        overwrite: replace the masks already in ``<out_dir>/leye_mask/`` or ``reye_mask/``; without it
            such a folder holding files is an error (the capture's own eye masks are never replaced
            by accident).

    Returns:
        ``{"frames": n, "left_pixels": [...], "right_pixels": [...], "out_dir": ...}``: the
        eye pixel count of each written frame.
    """
    import imageio.v3 as iio

    from ..core import ops
    from ..geometry.mesh import near_far
    from .capture import Capture

    capture = os.path.abspath(os.fspath(capture))
    if not os.path.isdir(capture):
        raise ToolError(f"capture folder '{capture}' does not exist")
    out_dir = os.path.abspath(os.fspath(out_dir)) if out_dir else capture
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ToolError(f"--out '{out_dir}' is a file, not a folder")
    for sub in ("leye_mask", "reye_mask"):
        d = os.path.join(out_dir, sub)
        held = [f for f in os.listdir(d) if not f.startswith(".")] if os.path.isdir(d) else []
        if held and not overwrite:
            raise ToolError(f"'{d}' already holds {len(held)} file(s) (e.g. {min(held)}); eye-masks does not "
                            "replace them unless you pass --overwrite; or write elsewhere with --out DIR")
    left_mask = left_mask or os.path.join(capture, "diffuse_leye_mask.png")
    right_mask = right_mask or os.path.join(capture, "diffuse_reye_mask.png")
    paints = []
    for path, what in ((left_mask, "left eye UV mask"), (right_mask, "right eye UV mask")):
        m = _read_image(path, what, mask=True)
        _check_paint(m, os.fspath(path), what)
        paints.append(torch.from_numpy(np.ascontiguousarray(m)).float().div(255.0)[None, None].to(device))
    verts, uvs, faces = load_mesh_uv(mesh_uv)
    import warnings

    with warnings.catch_warnings():  # optional masks (the ones this tool writes, too) do not matter here
        warnings.simplefilter("ignore", UserWarning)
        cap = Capture(capture, split="all", pixels=False)  # the cameras alone: no image is decoded
    K, w2c = cap.K.to(device), cap.w2c.to(device)
    for sub in ("leye_mask", "reye_mask"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    verts, uvs, faces = verts.to(device), uvs.to(device), faces.to(device)
    near, far = near_far(cap.cam_centers.to(device), verts)
    counts = {"left_pixels": [], "right_pixels": []}
    frames = range(cap.n_frames)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="eye masks", unit="frame", file=sys.stderr)
    for i in frames:
        clip = ops.project_to_clip(verts, K, w2c[i], cap.H, cap.W, near=near, far=far)
        p2f, bary, _ = ops.rasterize(clip, faces, cap.H, cap.W)
        uv = ops.interpolate(uvs, faces, p2f, bary)
        # grid_sample: x = 2u - 1 (left to right), y = 1 - 2v (top row first), texel centres as
        # in rasterize_uv (align_corners=False).
        grid_uv = torch.stack([2 * uv[..., 0] - 1, 1 - 2 * uv[..., 1]], -1)[None]
        for paint, sub, key in ((paints[0], "leye_mask", "left_pixels"), (paints[1], "reye_mask", "right_pixels")):
            val = torch.nn.functional.grid_sample(paint, grid_uv, mode="bilinear", padding_mode="border",
                                                  align_corners=False)[0, 0]
            eye = (val >= 0.5) & (p2f >= 0)
            out = (eye.to(torch.uint8) * 255).cpu().numpy()
            iio.imwrite(os.path.join(out_dir, sub, cap.image_names[i] + ".png"), out)
            counts[key].append(int(eye.sum()))
    return {"frames": cap.n_frames, "out_dir": out_dir, **counts}


# --------------------------------------------------------------------------- uv-landmarks
def _green_spots(img: np.ndarray, tolerance: int):
    """8-connected groups of (near) pure-green texels: list of [n_k, 2] (row, col) arrays."""
    if img.ndim != 3 or img.shape[-1] < 3:
        return []
    rgb = img[..., :3].astype(np.int32)
    green = (rgb[..., 0] <= tolerance) & (rgb[..., 1] >= 255 - tolerance) & (rgb[..., 2] <= tolerance)
    rows, cols = np.nonzero(green)
    label = -np.ones(len(rows), np.int64)
    index = {(r, c): k for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))}
    spots = []
    for k in range(len(rows)):
        if label[k] >= 0:
            continue
        label[k] = len(spots)
        stack, members = [k], []
        while stack:
            m = stack.pop()
            members.append(m)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    n = index.get((rows[m] + dr, cols[m] + dc))
                    if n is not None and label[n] < 0:
                        label[n] = len(spots)
                        stack.append(n)
        spots.append(np.stack([rows[members], cols[members]], -1))
    spots.sort(key=lambda s: (s[:, 0].min(), s[:, 1].min()))
    return spots


def _spot_points(spots, coord: np.ndarray, image_path: str, coord_path: str) -> np.ndarray:
    pts = []
    for s in spots:
        p = coord[s[:, 0], s[:, 1]].astype(np.float64)
        valid = np.isfinite(p).all(-1) & (p != 0).any(-1)
        if not valid.any():
            r, c = s[0]
            raise ToolError(
                f"green texel (row {r}, column {c}) of '{image_path}' has no 3D point in '{coord_path}' "
                f"(no face covers it): paint the landmark on the mesh's UV islands"
            )
        pts.append(p[valid].mean(0))
    return np.stack(pts)


def uv_landmarks(coord_map, image=None, left_image=None, right_image=None, tolerance: int = 0) -> dict:
    """3D eye landmarks from green texels painted on the UV map.

    Either ``image`` (one texture with 4 green landmarks per eye, 8 in all: the two groups of 4 are
    found by 2-means on their 3D points; the group with the larger mean world x is the subject's
    left eye), or ``left_image`` and ``right_image`` (4 each, as CoRA's run guide paints them).

    Args:
        coord_map: ``coord.npy`` ([H, W, 3] texel-to-3D map, see the module docstring); the
            images must have its size.
        tolerance: accept texels within this many 8-bit levels of (0, 255, 0) (for JPEGs).

    Returns:
        ``{"left_eye_ldm": [[x, y, z]] * 4, "right_eye_ldm": [...]}`` (world units). Landmarks
        of one eye are ordered by their texel position (top row first, then left to right).
    """
    coord_path = os.fspath(coord_map)
    if not os.path.isfile(coord_path):
        raise ToolError(f"texel-to-3D map '{coord_path}' does not exist")
    try:
        coord = np.load(coord_path)
    except Exception as e:  # numpy raises many kinds
        raise ToolError(f"cannot read texel-to-3D map '{coord_path}': {e}") from None
    if coord.ndim != 3 or coord.shape[-1] != 3:
        raise ToolError(f"texel-to-3D map '{coord_path}' must have shape [H, W, 3], got {coord.shape}")

    def load(path, what):
        img = _read_image(path, what)
        if img.shape[:2] != coord.shape[:2]:
            raise ToolError(
                f"{what} '{path}' is {img.shape[1]}x{img.shape[0]} (w x h) but the texel-to-3D map "
                f"'{coord_path}' is {coord.shape[1]}x{coord.shape[0]}"
            )
        return img

    def count_error(path, spots, need):
        n_tex = sum(len(s) for s in spots)
        raise ToolError(
            f"found {len(spots)} green landmark(s) ({n_tex} pure-green (0,255,0) texel(s)) in '{path}'; "
            f"need exactly {need} ({'4 per eye' if need == 8 else '4 for this eye'}), each a single texel or "
            f"a connected group of texels"
        )

    if image is not None:
        if left_image is not None or right_image is not None:
            raise ToolError("give either --image, or --left-image and --right-image, not both")
        img = load(image, "landmark image")
        spots = _green_spots(img, tolerance)
        if len(spots) != 8:
            count_error(image, spots, 8)
        pts = _spot_points(spots, coord, os.fspath(image), coord_path)
        # 2-means in 3D, started from the two points farthest apart.
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        a, b = np.unravel_index(np.argmax(d), d.shape)
        centres = pts[[a, b]]
        for _ in range(20):
            lab = np.argmin(np.linalg.norm(pts[:, None] - centres[None], axis=-1), axis=1)
            if (lab == 0).all() or (lab == 1).all():
                break
            centres = np.stack([pts[lab == 0].mean(0), pts[lab == 1].mean(0)])
        sizes = [int((lab == 0).sum()), int((lab == 1).sum())]
        if sizes != [4, 4]:
            raise ToolError(
                f"the 8 green landmarks of '{image}' do not split into two eyes of 4: the two groups "
                f"nearest each other in 3D have {sizes[0]} and {sizes[1]}"
            )
        left = 0 if centres[0, 0] > centres[1, 0] else 1
        return {"left_eye_ldm": pts[lab == left].tolist(), "right_eye_ldm": pts[lab != left].tolist()}
    if left_image is None or right_image is None:
        raise ToolError("give --image (8 landmarks), or both --left-image and --right-image (4 each)")
    out = {}
    for key, path in (("left_eye_ldm", left_image), ("right_eye_ldm", right_image)):
        img = load(path, "landmark image")
        spots = _green_spots(img, tolerance)
        if len(spots) != 4:
            count_error(path, spots, 4)
        out[key] = _spot_points(spots, coord, os.fspath(path), coord_path).tolist()
    lx = np.mean([p[0] for p in out["left_eye_ldm"]])
    rx = np.mean([p[0] for p in out["right_eye_ldm"]])
    if lx < rx:
        logging.getLogger(__name__).warning(
            f"uv-landmarks: the left-eye landmarks (mean x {lx:.4f}) lie at smaller x than "
            f"the right-eye ones ({rx:.4f}); eyefast's 'left' is the subject's left eye, at +x")
    return out


# --------------------------------------------------------------------------- triangulate
def nearest_point_to_rays(origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Least-squares point nearest to rays (lines) ``origins, dirs [N, 3]``: solves
    ``sum_i (I - d_i d_i^T) (p - o_i) = 0`` with unit ``d_i``. Needs 2+ non-parallel rays."""
    o = np.asarray(origins, np.float64)
    d = np.asarray(dirs, np.float64)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # [N, 3, 3]
    A = P.sum(0)
    b = np.einsum("nij,nj->i", P, o)
    w = np.linalg.eigvalsh(A)
    if len(o) < 2 or w[0] < 1e-10 * max(w[-1], 1e-300):
        raise ToolError("the rays are (nearly) parallel: the landmark cannot be triangulated")
    return np.linalg.solve(A, b)


#: triangulate: how far outside the image (a fraction of its larger side) a 2D landmark may lie
TRIANGULATE_MARGIN = 0.02


def triangulate(capture, landmarks, integer_pixel_centers: bool = False) -> dict:
    """Triangulates multi-view 2D eye landmarks (see the module docstring for the JSON format).

    Args:
        capture: the capture folder (its cameras; every frame, split "all").
        landmarks: path of the JSON file, or the parsed dict.
        integer_pixel_centers: the 2D points put pixel centres at integers (OpenCV); 0.5 is added.

    Returns:
        ``{"left_eye_ldm": [[x, y, z]] * 4, "right_eye_ldm": [...], "views": {eye: n},
        "rms_ray_distance": {eye: world units}}``.
    """
    import warnings

    from .capture import Capture, frame_name

    src = "the landmark dict"
    if not isinstance(landmarks, dict):
        src = os.fspath(landmarks)
        if not os.path.isfile(src):
            raise ToolError(f"landmark file '{src}' does not exist")
        try:
            with open(src, encoding="utf-8") as f:
                landmarks = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ToolError(f"cannot parse landmark file '{src}': {e}") from None
    if not isinstance(landmarks, dict) or not landmarks:
        raise ToolError(f"{src}: expected a JSON object {{\"<image file name>\": {{\"left_eye\": [[x, y], ...], ...}}}}")
    with warnings.catch_warnings():  # optional masks do not matter here
        warnings.simplefilter("ignore", UserWarning)
        cap = Capture(capture, split="all", pixels=False)  # the cameras alone
    names = {n: i for i, n in enumerate(cap.image_names)}
    unknown = [k for k in landmarks if frame_name(str(k)) not in names]
    if unknown:
        raise ToolError(
            f"{src}: unknown image name(s) {', '.join(repr(u) for u in unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; the capture '{cap.root}' has frames "
            f"{', '.join(cap.image_names[:3])}{' ...' if cap.n_frames > 3 else ''}"
        )
    c2w = cap.c2w64.numpy()
    off = 0.5 if integer_pixel_centers else 0.0
    margin = TRIANGULATE_MARGIN * max(cap.W, cap.H)
    eyes = ("left_eye", "right_eye")
    for name, entry in landmarks.items():  # the entries' form, before any eye is triangulated
        if not isinstance(entry, dict):
            raise ToolError(f"{src}: entry '{name}' must be an object with 'left_eye' / 'right_eye' lists")
        extra = [k for k in entry if k not in eyes]
        if extra:
            raise ToolError(f"{src}: entry '{name}' has unknown key(s) {', '.join(repr(str(k)) for k in extra)}; "
                            "the keys are 'left_eye' and 'right_eye'")
        arrs = {}
        for eye in eyes:
            pts = entry.get(eye)
            if pts is None:
                continue
            try:
                arr = np.asarray(pts, dtype=np.float64) if isinstance(pts, list) else None
            except (TypeError, ValueError):
                arr = None
            if arr is None or arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
                raise ToolError(f"{src}: '{name}' {eye} must be a list of [x, y] pixel coordinates, got {pts!r}"[:300])
            u = arr + off
            out = (u[:, 0] < -margin) | (u[:, 0] > cap.W + margin) | (u[:, 1] < -margin) | (u[:, 1] > cap.H + margin)
            if out.any():
                k = int(np.argmax(out))
                raise ToolError(
                    f"{src}: '{name}' {eye} point {k} ({arr[k, 0]:g}, {arr[k, 1]:g}) lies outside the {cap.W}x{cap.H} "
                    "image (pixel coordinates: x from 0 to the width, y from 0 to the height); are they normalised "
                    "to 0..1, or from another image size?")
            arrs[eye] = arr
        if len(arrs) == 2 and arrs["left_eye"].shape == arrs["right_eye"].shape and \
                np.abs(arrs["left_eye"] - arrs["right_eye"]).max() < 0.5:
            raise ToolError(f"{src}: '{name}' gives the same points for left_eye and right_eye; each eye needs "
                            "its own 4 landmarks")
    result, views, rms = {}, {}, {}
    for eye, key in (("left_eye", "left_eye_ldm"), ("right_eye", "right_eye_ldm")):
        origins, dirs = [], []  # per view: [4, 3]
        for name, entry in landmarks.items():
            pts = entry.get(eye)
            if pts is None:
                continue
            arr = np.asarray(pts, dtype=np.float64)
            if arr.shape[0] != 4:
                raise ToolError(
                    f"{src}: '{name}' has {arr.shape[0]} {eye} landmark(s); every image must give the same 4 "
                    f"(the config's {key} takes 4 points)"
                )
            i = names[frame_name(str(name))]
            u = arr + off  # continuous coordinates: pixel index k covers [k, k+1)
            d_cam = np.stack([(u[:, 0] - cap.cx) / cap.fl_x, (u[:, 1] - cap.cy) / cap.fl_y, np.ones(4)], -1)
            dirs.append(d_cam @ c2w[i, :3, :3].T)
            origins.append(np.broadcast_to(c2w[i, :3, 3], (4, 3)))
        if len(dirs) < 2:
            raise ToolError(
                f"{src}: {eye} is given in {len(dirs)} image(s); triangulation needs at least 2 views"
            )
        O, D = np.stack(origins), np.stack(dirs)  # [n_views, 4, 3]
        pts3 = [nearest_point_to_rays(O[:, k], D[:, k]) for k in range(4)]
        result[key] = [p.tolist() for p in pts3]
        views[eye] = len(dirs)
        Dn = D / np.linalg.norm(D, axis=-1, keepdims=True)
        dist = []
        for k in range(4):
            v = pts3[k][None] - O[:, k]
            dist.append(np.linalg.norm(v - (v * Dn[:, k]).sum(-1, keepdims=True) * Dn[:, k], axis=-1))
        rms[eye] = float(np.sqrt(np.mean(np.square(dist))))
    gap = np.linalg.norm(np.mean(result["left_eye_ldm"], 0) - np.mean(result["right_eye_ldm"], 0))
    if not gap > 0:
        raise ToolError(f"{src}: the left and right eyes triangulate to the same points; each eye needs its own "
                        "landmarks")
    return {**result, "views": views, "rms_ray_distance": rms}


# --------------------------------------------------------------------------- CLI
