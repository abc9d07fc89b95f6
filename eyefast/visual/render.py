"""Rendering a trained head from any camera under any lights: the volume model, or the exported assets.

:class:`Renderer` draws one :class:`~eyefast.visual.cameras.Camera` with a list of point lights
(:mod:`eyefast.visual.lights`), from ``source="model"`` (the trained volume model, as training and
evaluation render it, with the lights placed anywhere: :func:`eyefast.scene.shading.shade_lights`) or
``source="export"`` (the exported meshes and baked textures of ``RUN/export`` through eyefast's
rasteriser: what the assets look like in another tool). :func:`display` turns a render into an image:
the shaded colour, or one of the buffers (albedo, specular, roughness, normals, eye opacities).
:func:`render_sequence` and :func:`write_frames` make turntables: an MP4 (imageio's ffmpeg plugin; the
``imageio-ffmpeg`` wheel ships an ffmpeg), a GIF, a PNG strip or a folder of PNG frames.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..core.imaging import label, sheet
from ..scene.render import render_rays
from .cameras import Camera, camera_rays
from .lights import place_lights

__all__ = ["Renderer", "MODES", "display", "render_sequence", "write_frames", "VIDEO_EXTS"]

#: what :func:`display` shows
MODES = ("shaded", "albedo", "specular", "roughness", "normals", "eyes")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi")


class Renderer:
    """Renders a :class:`eyefast.run.Run` (see the module docstring).

    Args:
        run: the trained run. source: ``"model"`` or ``"export"``. export_dir: the export folder
            (default ``RUN/export``). chunk: rays per batch (default the config's ``renderer.chunk_size``).
    """

    def __init__(self, run, source: str = "model", export_dir: str | None = None, chunk: int | None = None):
        if source not in ("model", "export"):
            raise ValueError(f"source must be 'model' or 'export', got {source!r}")
        self.run, self.source = run, source
        self.cfg = run.cfg
        self.gamma = float(run.cfg.light.gamma)
        self.chunk = int(chunk or run.cfg.renderer.chunk_size)
        self.color = [float(c) for c in run.cfg.light.color]
        self.intensity = float(run.cfg.light.intensity)
        self._objs = None
        if source == "export":
            from ..export.assets import load_assets
            from ..export.preview import asset_objects

            folder = export_dir or (os.path.join(run.folder, "export") if run.folder else None)
            if folder is None:
                raise ValueError("source 'export' needs the export folder (export_dir)")
            self._objs = asset_objects(*load_assets(folder))
        self._novel_fid = self._unseen_frame()

    def _unseen_frame(self) -> int:
        """A frame id the model was not trained on: its ambient occlusion is the training views' mean."""
        seen = self.run.model.frame_seen.detach().cpu()
        free = (~seen).nonzero()
        return int(free[0]) if len(free) else 0

    def lights(self, specs, cam: Camera, t: float = 0.0, scale: float = 1.0) -> list:
        """The point lights of ``specs`` for ``cam`` at time ``t`` (see :func:`eyefast.visual.lights.place_lights`),
        with the capture's colour and ``scale`` times its intensity."""
        return place_lights(specs, cam, self.target, t, self.color, self.intensity * scale)

    @property
    def target(self) -> torch.Tensor:
        if not hasattr(self, "_target"):
            from .cameras import rig_of

            self._target = rig_of(self.run.capture("train")).target
        return self._target

    @torch.no_grad()
    def render(self, cam: Camera, lights: list, cancel=None) -> dict | None:
        """``[H, W, ...]`` CPU tensors of ``cam`` under ``lights``: ``rgb`` (linear, black background),
        ``opacity``, ``albedo``, ``normal``, ``specular``, ``roughness``, ``obj_opacity`` (model) ...
        ``cancel()`` is asked between batches of rays; when it returns True the render stops (None)."""
        if self.source == "export":
            return self._render_export(cam, lights)
        run = self.run
        model, grid = run.model, run.grid
        model.eval()
        grid.eval()
        dev = run.device
        o_all, d_all = camera_rays(cam, dev)
        fid = torch.tensor(self._novel_fid if cam.frame_id is None else cam.frame_id, device=dev)
        light = {"color": torch.tensor(self.color, device=dev), "intensity": self.intensity,
                 "lights": [{**lt, "position": None if lt["position"] is None else lt["position"].to(dev),
                             "color": lt["color"].to(dev)} for lt in lights]}
        parts = []
        for s in range(0, o_all.shape[0], self.chunk):
            if cancel is not None and cancel():
                return None
            o, d = o_all[s:s + self.chunk], d_all[s:s + self.chunk]
            r = render_rays(model, grid, run.ops, o, d, fid.expand(o.shape[0]), light, step=run.step_size,
                            train=False, with_extras=True, shading=self.cfg.renderer.shading)
            parts.append({k: v.detach().cpu() for k, v in r.items() if torch.is_tensor(v) and v.dim() >= 1})
        return {k: torch.cat([p[k] for p in parts], 0).reshape(cam.H, cam.W, *parts[0][k].shape[1:]) for k in parts[0]}

    def _render_export(self, cam: Camera, lights: list) -> dict:
        from ..export.preview import render_assets

        m = self.run.model
        fid = self._novel_fid if cam.frame_id is None else cam.frame_id
        occ = float(m.occlusion(torch.tensor([fid], device=self.run.device))[0])
        return render_assets(self._objs, cam.K, cam.c2w, cam.H, cam.W, lights, light_scale=float(m.light_scale),
                             sh_coeffs=m.sh_coeffs.detach(), sh_beta=m.sh_beta, sh_scale=m.sh_scale, occlusion=occ)

    def image(self, r: dict, mode: str = "shaded") -> torch.Tensor:
        return display(r, mode, self.gamma)


def display(r: dict, mode: str, gamma: float) -> torch.Tensor:
    """``[H, W, 3]`` in 0..1 of a render ``r``: ``shaded`` (the colour, sRGB-ish), ``albedo`` (sRGB-ish),
    ``specular`` (intensity, grey), ``roughness`` (grey), ``normals`` ((n + 1) / 2 where opaque) or
    ``eyes`` (the per-object opacities: R left eye, G right eye, B face at 30%)."""
    op = r["opacity"][..., None]
    g = 1.0 / gamma
    if mode == "shaded":
        img = r["rgb"].clamp(0, 1) ** g
    elif mode == "albedo":
        img = r["albedo"].clamp(0, 1) ** g
    elif mode == "specular":
        img = r["specular"][..., None].expand(*op.shape[:-1], 3)
    elif mode == "roughness":
        img = r["roughness"][..., None].expand(*op.shape[:-1], 3)
    elif mode == "normals":
        img = (r["normal"] * 0.5 + 0.5) * op
    elif mode == "eyes":
        if "obj_opacity" in r:
            obj = r["obj_opacity"]
            if obj.shape[-1] == 1:
                img = torch.cat([torch.zeros_like(obj), torch.zeros_like(obj), obj * 0.3], -1)
            else:
                img = torch.stack([obj[..., 1], obj[..., 2], obj[..., 0] * 0.3], -1)
        else:  # the rasterised export: which object each pixel shows
            o = r["object"]
            img = torch.stack([(o == 1) | (o == 3), (o == 2) | (o == 4), (o == 0) * 0.3], -1).float()
    else:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    return img.float().clamp(0, 1).cpu()


def render_sequence(renderer: Renderer, cameras: list, light_specs, mode: str = "shaded", scale: float = 1.0,
                    labels: bool = False, progress: bool = True) -> list:
    """One uint8 ``[H, W, 3]`` frame per camera; the lights placed for each (``t = k / n``)."""
    from tqdm import tqdm

    frames = []
    n = len(cameras)
    for k, cam in enumerate(tqdm(cameras, desc="render", unit="frame", disable=not progress, dynamic_ncols=True)):
        r = renderer.render(cam, renderer.lights(light_specs, cam, k / max(n, 1), scale))
        img = renderer.image(r, mode)
        if labels:
            img = label(img, cam.name)
        frames.append((img.numpy() * 255).round().astype(np.uint8))
    return frames


def write_frames(frames: list, out: str, fps: float = 12.0, columns: int | None = None) -> str:
    """Writes ``frames`` (uint8 ``[H, W, 3]``) to ``out`` by its form: a video (``.mp4``, ``.mov``, ``.mkv``,
    ``.webm``, ``.avi``; H.264 in MP4, through imageio's ffmpeg plugin), ``.gif`` (looping), ``.png`` (a
    strip: the frames side by side, ``columns`` per row, default at most 8), or a folder (a path ending
    in ``/`` or without an extension: ``frame_0000.png``...). Returns what was written."""
    import imageio.v3 as iio

    if not frames:
        raise ValueError("no frames to write")
    ext = os.path.splitext(out)[1].lower()
    parent = os.path.dirname(os.path.abspath(out.rstrip("/\\")))
    os.makedirs(parent, exist_ok=True)
    if out.endswith(("/", os.sep)) or ext == "":
        os.makedirs(out, exist_ok=True)
        for k, f in enumerate(frames):
            iio.imwrite(os.path.join(out, f"frame_{k:04d}.png"), f)
        return out
    if ext == ".png":
        cols = columns or min(len(frames), 8)
        img = sheet([torch.from_numpy(f) for f in frames], cols).numpy()
        iio.imwrite(out, img)
        return out
    if ext == ".gif":
        iio.imwrite(out, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        return out
    if ext in VIDEO_EXTS:
        _write_video(frames, out, fps)
        return out
    raise ValueError(f"--out {out!r}: give a video ({', '.join(VIDEO_EXTS)}), .gif, .png (a strip) or a folder/")


def _write_video(frames: list, out: str, fps: float) -> None:
    try:
        import imageio.v2 as iio2
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary)
    except ImportError:
        raise RuntimeError("writing a video needs imageio-ffmpeg: pip install imageio-ffmpeg "
                           "(or pip install 'eyefast[video]'); a .png strip, a .gif or a folder/ needs no codec") from None
    H, W = frames[0].shape[:2]
    pad_h, pad_w = H % 2, W % 2  # yuv420p needs even sides
    ext = os.path.splitext(out)[1].lower()
    kw = {"codec": "libx264", "pixelformat": "yuv420p", "quality": 8} if ext in (".mp4", ".mov", ".mkv") else {}
    with iio2.get_writer(out, format="FFMPEG", mode="I", fps=fps, macro_block_size=1, **kw) as w:
        for f in frames:
            if pad_h or pad_w:
                f = np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)))
            w.append_data(f)
