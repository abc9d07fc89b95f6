"""Export of relightable assets (docs/method.md section 6): ``eyefast export``.

Usage::

    eyefast export --run RUN [--out DIR] [...]     # RUN/config.yaml, RUN/latest.pth, RUN/export
    eyefast export CONFIG --ckpt CKPT --out DIR [--uv-size 2048] [--mc-res 256]
                   [--eye-uv-size N] [--chunk-size N] [--device cpu|cuda|cuda:N|N|auto]
                   [--preview] [--set section.key=value ...]
    python -m eyefast.train --config_path CONFIG --mode export_eyeball --ckpt_path CKPT --save_visual_dir DIR

``RUN`` is a run folder ``<workspace>/<name>`` written by ``eyefast train``. From Python:
``export_run(Run.load(RUN), out_dir, ...)`` (:class:`eyefast.run.Run`).

Output folder::

    mesh.obj          face mesh (face SDF only, the eyes are not in it): marching cubes on an
                      mc_res^3 grid over [-bound, bound]^3, decimated by half (quadric), only the
                      faces seen inside the foreground masks of the training views, the largest
                      connected component, small (triangle/quad) holes filled. World units.
    mesh_uv.obj       the same surface with a UV atlas (xatlas; vertices split along seams),
    mesh_uv.mtl       naming the textures below.
    diffuse.png       diffuse albedo, sRGB-ish: albedo ** (1/2.2), 8 bit RGB.
    specular.png      specular intensity (0..1; the BRDF's F0 = 0.08 * specular), 8 bit grey.
    roughness.png     roughness, already mapped into [brdf.min_roughness, brdf.max_roughness]
                      (alpha = roughness^2), 8 bit grey.
    normal.png        world-space unit normals of the face SDF gradient, (n + 1) / 2, 8 bit RGB.
    coord.npy         texel-to-3D map: float32 [uv, uv, 3] world point of each texel centre, NaN
                      where no UV triangle covers the texel. Same orientation as the PNGs: row 0
                      is the top of the image (v = 1, OBJ convention); texel (i, j) (column i,
                      row j) has its centre at u = (i + 0.5) / uv, v = 1 - (j + 0.5) / uv. The
                      landmark tool (eyefast tools uv-landmarks) reads it.
    left/  right/     one per eye ("left" = the config's eyeball_left_center = the subject's left
                      eye, seen on the viewer's right): mesh.obj (icosphere of level 3 at the
                      learned centre and radius, minus the faces no training camera sees),
                      mesh_uv.obj + mesh_uv.mtl, diffuse.png, normal.png (sphere normals),
                      coord.npy. Eye specular and roughness are the fixed 0.2 and 0.05 (docs/method.md section 2).
    head.glb          glTF 2.0 binary: meshes "face", "left_eye", "right_eye" with PBR
                      metallic-roughness materials: baseColorTexture (sRGB albedo),
                      metallicRoughnessTexture (G = roughness, B = metallic = 0), a tangent-space
                      normalTexture (face; TANGENT vertex attribute included, so viewers use the
                      exact frames the map was baked with), and the specular intensity through
                      KHR_materials_specular + KHR_materials_ior (ior 1.788 gives F0 = 0.08).
    export.json       what was exported: step, eye centres and radius, light and light_scale,
                      roughness range, sizes, timings.
    preview.png       (--preview) the exported face and eyes rendered from the first training
                      camera with the baked textures and the BRDF of eyefast.scene.shading:
                      top row: the photo, the flash (co-located) light, a light from the
                      viewer's left; bottom row: from the right, from above, from below.

Albedo and specular are the material network's outputs: shading under the capture's light uses
``light.color * light.intensity * light_scale / d^2`` (light_scale is in export.json).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ops
from ..geometry.mesh import DEFAULT_CHUNK, clipped_face_mesh, face_normals
from ..scene.shading import EYE_ROUGHNESS, EYE_SPECULAR
from .eyes import export_cornea, export_eye
from .files import DEFAULT_MC_RES, DEFAULT_UV_SIZE, GAMMA_TEX, ExportError, to_u8, write_mtl, write_obj, write_png
from .gltf import write_glb
from .preview import render_preview
from .textures import dilate, query_material, to_image, unwrap, uv_surface, vertex_tangents

__all__ = ["export_run"]


def export_run(run, out_dir: str, uv_size: int = DEFAULT_UV_SIZE, mc_res: int = DEFAULT_MC_RES, preview: bool = False,
               chunk_size: int = DEFAULT_CHUNK, eye_uv_size: int | None = None, quiet: bool = True,
               glb: bool = True) -> dict:
    """Exports the assets of the module docstring into ``out_dir``.

    Args:
        run: a :class:`eyefast.run.Run` (its training capture gives the views and masks for the
            visibility clipping).
        uv_size: face texture size (square). eye_uv_size: eye texture size (default uv_size // 2).
        mc_res: marching-cubes grid resolution. chunk_size: points per network query.
        preview: also render ``preview.png``. quiet: no progress bars.

    Returns:
        dict name -> path of everything written (``mesh``, ``mesh_uv``, ``mtl``, ``diffuse``,
        ``specular``, ``roughness``, ``normal``, ``coord``, ``left/mesh``, ..., ``glb``, ``json``,
        ``preview``) plus ``stats`` (a dict: face counts, timings).
    """
    if uv_size < 16 or uv_size > 16384:
        raise ExportError(f"--uv-size must be in 16..16384, got {uv_size}")
    if mc_res < 16 or mc_res > 2048:
        raise ExportError(f"--mc-res must be in 16..2048, got {mc_res}")
    if chunk_size < 1024:
        raise ExportError(f"--chunk-size must be >= 1024, got {chunk_size}")
    eye_uv_size = int(eye_uv_size or max(16, uv_size // 2))
    model, cfg, cap = run.model, run.cfg, run.capture("train")
    dev = run.device
    model.eval()
    bound = float(cfg.data.bound)
    os.makedirs(out_dir, exist_ok=True)
    paths, stats, times = {}, {}, {}
    pad = max(2, uv_size // 256)

    def tick(name, t0):
        times[name] = round(time.perf_counter() - t0, 3)
        return time.perf_counter()

    t0 = time.perf_counter()
    # ---------------------------------------------------------------- face mesh
    mesh, st = clipped_face_mesh(model, cap, bound, mc_res, chunk_size, quiet, times)
    stats.update(st)
    t0 = time.perf_counter()
    V = np.asarray(mesh.vertices, dtype=np.float64)
    Fc = np.asarray(mesh.faces, dtype=np.int64)
    paths["mesh"] = os.path.join(out_dir, "mesh.obj")
    write_obj(paths["mesh"], V, Fc, header="eyefast face mesh (world units; eyes not included)")

    # ---------------------------------------------------------------- UV atlas + textures
    vmap, Fuv, UV = unwrap(V, Fc, uv_size, pad)
    Vuv = V[vmap]
    t0 = tick("unwrap", t0)
    paths["mesh_uv"] = os.path.join(out_dir, "mesh_uv.obj")
    paths["mtl"] = os.path.join(out_dir, "mesh_uv.mtl")
    write_obj(paths["mesh_uv"], Vuv, Fuv, UV, mtl="mesh_uv.mtl", material="face",
              header="eyefast face mesh with UV atlas (world units)")
    write_mtl(paths["mtl"], "face", {"map_Kd": "diffuse.png", "map_Ks": "specular.png", "map_Pr": "roughness.png"},
               extra="normal.png: WORLD-space normals (n + 1) / 2 (not a tangent-space map; head.glb has one)\n"
                     "specular.png: specular intensity, F0 = 0.08 * value; roughness.png: roughness (alpha = r^2)")
    p2f, bary, pts = uv_surface(Vuv, Fuv, UV, uv_size, dev)
    valid = p2f >= 0
    coord = pts.clone()
    coord[~valid] = float("nan")
    paths["coord"] = os.path.join(out_dir, "coord.npy")
    np.save(paths["coord"], coord.cpu().numpy().astype(np.float32))
    x = pts[valid]
    albedo, spec, rough, nrm = query_material(model, x, chunk_size, quiet, "bake face textures")
    stats["texels"] = int(valid.sum())
    t0 = tick("bake", t0)
    tex = {
        "diffuse": dilate(to_image(albedo.clamp(0, 1) ** (1.0 / GAMMA_TEX), valid), valid, pad),
        "specular": dilate(to_image(spec[:, None], valid), valid, pad),
        "roughness": dilate(to_image(rough[:, None], valid), valid, pad),
        "normal": dilate(to_image(nrm * 0.5 + 0.5, valid), valid, pad),
    }
    u8 = {k: to_u8(v) for k, v in tex.items()}
    for k, arr in u8.items():
        paths[k] = os.path.join(out_dir, f"{k}.png")
        write_png(paths[k], arr)

    # tangent-space normal map for glTF (frames from the UV parametrisation, as a viewer builds them)
    Vt = torch.as_tensor(Vuv, dtype=torch.float32, device=dev)
    Ft = torch.as_tensor(Fuv, dtype=torch.int64, device=dev)
    UVt = torch.as_tensor(UV, dtype=torch.float32, device=dev)
    vn = face_normals(model, Vt, chunk_size)
    # fall back to the mesh normal where the SDF gradient is degenerate or disagrees with the winding
    mesh_vn = torch.as_tensor(np.asarray(mesh.vertex_normals)[vmap], dtype=torch.float32, device=dev)
    vn = torch.where(((vn * mesh_vn).sum(-1, keepdim=True) > 0.0) & torch.isfinite(vn).all(-1, keepdim=True),
                     vn, mesh_vn)
    tang = vertex_tangents(Vt, Ft, UVt, vn)
    n_i = F.normalize(ops.interpolate(vn.contiguous(), Ft, p2f, bary), dim=-1)[valid]
    t_i = ops.interpolate(tang.contiguous(), Ft, p2f, bary)[valid]
    w_i = torch.where(t_i[:, 3:] >= 0, 1.0, -1.0)
    T = F.normalize(t_i[:, :3] - n_i * (n_i * t_i[:, :3]).sum(-1, keepdim=True), dim=-1)
    B = w_i * torch.linalg.cross(n_i, T)
    nts = torch.stack([(nrm * T).sum(-1), (nrm * B).sum(-1), (nrm * n_i).sum(-1)], -1)
    nts = F.normalize(nts, dim=-1)
    tex_nts = dilate(to_image(nts * 0.5 + 0.5, valid), valid, pad, fill=[0.5, 0.5, 1.0])
    stats["tangent_normal_mean_z"] = round(float(nts[:, 2].mean()) if nts.shape[0] else 1.0, 4)
    t0 = tick("textures", t0)

    # ---------------------------------------------------------------- eyes
    eyes = {}
    centers = model.eye_centers.detach().float()
    radius = float(model.eye_radius.detach())
    corneas = {}
    for k, side in ((0, "left"), (1, "right")):
        folder = os.path.join(out_dir, side)
        cut = None
        if model.cornea:
            corneas[side] = export_cornea(model, k, folder, side, max(64, eye_uv_size // 4))
            cut = (corneas[side]["gaze"], corneas[side]["seam_offset"])
        eyes[side] = export_eye(model, cap, centers[k], radius, folder, eye_uv_size, chunk_size, quiet, side, cut)
        if model.cornea:
            eyes[side]["paths"].update(corneas[side]["paths"])
            eyes[side]["cornea"] = corneas[side]
        for key, p in eyes[side]["paths"].items():
            paths[f"{side}/{key}"] = p
        stats[f"{side}_eye_faces"] = eyes[side]["n_faces"]
    t0 = tick("eyes", t0)

    # ---------------------------------------------------------------- glTF
    if glb:
        paths["glb"] = os.path.join(out_dir, "head.glb")
        write_glb(paths["glb"], Vuv, Fuv, UV, vn.cpu().numpy(), tang.cpu().numpy(), u8, to_u8(tex_nts), eyes,
                   float(cfg.brdf.max_roughness))
        t0 = tick("glb", t0)

    # ---------------------------------------------------------------- preview
    if preview:
        paths["preview"] = os.path.join(out_dir, "preview.png")
        face = {"verts": Vuv, "faces": Fuv, "uvs": UV, "tex": u8}
        render_preview(run, face, eyes, paths["preview"])
        t0 = tick("preview", t0)

    # ---------------------------------------------------------------- metadata
    paths["json"] = os.path.join(out_dir, "export.json")
    meta = {
        "step": int(run.step),
        "bound": bound,
        "convention": "world: +y up, the face looks along +z; 'left' = the subject's left eye "
                      "(config eyeball_left_center), seen on the viewer's right",
        "eyes": {s: {"center": eyes[s]["center"], "radius": radius, "faces": eyes[s]["n_faces"]} for s in eyes},
        "eye_brdf": {"specular": EYE_SPECULAR, "roughness": EYE_ROUGHNESS},
        "eye_model": model.eye_model,
        **({"cornea": {s: {k: v for k, v in corneas[s].items() if k not in ("paths", "iris", "mesh")}
                       for s in corneas}} if corneas else {}),
        "light": {"color": list(cfg.light.color), "intensity": float(cfg.light.intensity),
                  "light_scale": float(model.light_scale.detach()), "gamma": float(cfg.light.gamma)},
        "roughness_range": [float(cfg.brdf.min_roughness), float(cfg.brdf.max_roughness)],
        "textures": {"uv_size": uv_size, "eye_uv_size": eye_uv_size, "padding_texels": pad,
                     "diffuse": "albedo ** (1/2.2)", "specular": "F0 = 0.08 * value",
                     "roughness": "alpha = value^2", "normal": "world-space (n + 1) / 2",
                     "coord": "float32 [uv, uv, 3] world point per texel centre, NaN where empty; row 0 = top = v 1"},
        "mc_res": mc_res,
        "stats": stats,
        "timings_s": times,
    }
    with open(paths["json"], "w") as fh:
        json.dump(meta, fh, indent=1)
    paths["stats"] = {**stats, "timings_s": times}
    return paths
