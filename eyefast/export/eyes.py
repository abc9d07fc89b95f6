"""The eyes' assets: each globe as a textured sphere mesh, and for the refractive eye model the cornea
cap and the iris disc with its texture."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..core.eyes import MODEL_EYE, gaze_frame, model_eye_planes
from ..scene.shading import EYE_ROUGHNESS, EYE_SPECULAR, IRIS_ROUGHNESS
from .files import GAMMA_TEX, to_u8, write_mtl, write_obj, write_png
from .textures import dilate, query_material, to_image, unwrap, uv_surface

__all__ = ["export_eye", "export_cornea", "cap_mesh"]


def export_eye(model, cap, center: torch.Tensor, radius: float, folder: str, size: int, chunk: int, quiet: bool,
                side: str, cut=None) -> dict:
    """One eye: icosphere (level 3) minus the faces no training camera sees, UVs, textures.
    ``cut = (gaze [3], h)``: also minus the faces in front of the plane ``(x - c) . gaze = h``
    (the refractive eye: the cornea cap, which meets the globe in that plane, replaces the front)."""
    import trimesh

    os.makedirs(folder, exist_ok=True)
    c = center.cpu().numpy().astype(np.float64)
    sph = trimesh.creation.icosphere(subdivisions=4 if cut is not None else 3, radius=radius)
    V = np.asarray(sph.vertices) + c
    Fs = np.asarray(sph.faces, dtype=np.int64)
    if cut is not None:
        g, h = np.asarray(cut[0], dtype=np.float64), float(cut[1])
        Fs = Fs[((V[Fs].mean(1) - c) @ g) < h]
    dev = cap.device
    cen = torch.as_tensor(V[Fs].mean(1), dtype=torch.float32, device=dev)
    tri = V[Fs]
    fn = F.normalize(torch.as_tensor(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dtype=torch.float32,
                                     device=dev), dim=-1)
    seen = torch.zeros(len(Fs), dtype=torch.bool, device=dev)
    for i in range(cap.n_frames):
        to_cam = cap.cam_centers[i] - cen
        front = (fn * to_cam).sum(-1) > 0
        uv = cap.project(cen, i)
        inside = torch.isfinite(uv).all(-1) & (uv[:, 0] >= 0) & (uv[:, 0] < cap.W) & (uv[:, 1] >= 0) & (uv[:, 1] < cap.H)
        seen |= front & inside
    seen = seen.cpu().numpy()
    if not seen.any():
        warnings.warn(f"no training camera sees the {side} eye sphere; exporting the whole sphere", stacklevel=2)
        seen[:] = True
    mesh = trimesh.Trimesh(V, Fs[seen], process=False)
    mesh.remove_unreferenced_vertices()
    V, Fs = np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)
    paths = {"mesh": os.path.join(folder, "mesh.obj"), "mesh_uv": os.path.join(folder, "mesh_uv.obj"),
             "mtl": os.path.join(folder, "mesh_uv.mtl"), "diffuse": os.path.join(folder, "diffuse.png"),
             "normal": os.path.join(folder, "normal.png"), "coord": os.path.join(folder, "coord.npy")}
    write_obj(paths["mesh"], V, Fs, header=f"eyefast {side} eye (subject's {side}): icosphere level "
                                           f"{4 if cut is not None else 3}{' cut at the cornea seam' if cut is not None else ''}, "
                                           f"centre {c.tolist()}, radius {radius:.6g}")
    pad = max(2, size // 256)
    vmap, Fuv, UV = unwrap(V, Fs, size, pad)
    Vuv = V[vmap]
    write_obj(paths["mesh_uv"], Vuv, Fuv, UV, mtl="mesh_uv.mtl", material=f"{side}_eye",
              header=f"eyefast {side} eye with UV atlas")
    write_mtl(paths["mtl"], f"{side}_eye", {"map_Kd": "diffuse.png"},
               extra=f"eye BRDF: specular {EYE_SPECULAR} (F0 = 0.08 * specular), roughness {EYE_ROUGHNESS}\n"
                     "normal.png: WORLD-space sphere normals (n + 1) / 2")
    p2f, _, pts = uv_surface(Vuv, Fuv, UV, size, dev)
    valid = p2f >= 0
    ctr = center.to(dev)
    x = pts[valid]
    n = F.normalize(x - ctr, dim=-1)
    x = ctr + radius * n  # texel points on the sphere itself (the icosphere's flat faces lie inside)
    coord = torch.full_like(pts, float("nan"))
    coord[valid] = x
    np.save(paths["coord"], coord.cpu().numpy().astype(np.float32))
    albedo, _, _, _ = query_material(model, x, chunk, quiet, f"bake {side} eye", normals=False)
    diffuse = dilate(to_image(albedo.clamp(0, 1) ** (1.0 / GAMMA_TEX), valid), valid, pad)
    normal = dilate(to_image(n * 0.5 + 0.5, valid), valid, pad)
    u8 = {"diffuse": to_u8(diffuse), "normal": to_u8(normal)}
    write_png(paths["diffuse"], u8["diffuse"])
    write_png(paths["normal"], u8["normal"])
    vn = F.normalize(torch.as_tensor(Vuv, dtype=torch.float32) - center.cpu(), dim=-1).numpy()
    return {"paths": paths, "verts": Vuv, "faces": Fuv, "uvs": UV, "normals": vn, "tex": u8,
            "center": [float(v) for v in c], "radius": radius, "n_faces": int(len(Fs))}


def cap_mesh(center, radius, axis, e_u, e_v, cos_max, rings=16, segments=64):
    """Spherical cap of ``radius`` about ``axis`` from the pole to polar angle ``acos(cos_max)``:
    (verts [V, 3], faces [F, 3] counter-clockwise seen from outside, unit normals [V, 3])."""
    th_max = math.acos(max(-1.0, min(1.0, cos_max)))
    verts, normals = [axis.copy()], []
    for i in range(1, rings + 1):
        th = th_max * i / rings
        for j in range(segments):
            ph = 2.0 * math.pi * j / segments
            verts.append(math.sin(th) * (math.cos(ph) * e_u + math.sin(ph) * e_v) + math.cos(th) * axis)
    nrm = np.asarray(verts)
    faces = [[0, 1 + j, 1 + (j + 1) % segments] for j in range(segments)]
    for i in range(rings - 1):
        a, b = 1 + i * segments, 1 + (i + 1) * segments
        for j in range(segments):
            j1 = (j + 1) % segments
            faces += [[a + j, b + j, b + j1], [a + j, b + j1, a + j1]]
    return center + radius * nrm, np.asarray(faces, dtype=np.int64), nrm


def export_cornea(model, k: int, folder: str, side: str, tex_size: int) -> dict:
    """The refractive eye's extra assets (``eye_model: cornea``): ``cornea.obj`` (the clear cap in
    front of the limbus, the cornea sphere's part outside the globe), ``iris.obj`` (the disc in the
    iris plane out to the globe, with UVs) and ``iris.png`` (its albedo ** (1/2.2): the learned iris
    texture inside the limbus, the learned colour behind the cornea outside it)."""
    os.makedirs(folder, exist_ok=True)
    r = float(model.eye_radius.detach())
    c = model.eye_centers.detach()[k].double().cpu()
    g = F.normalize(model.gaze.detach()[k].double().cpu(), dim=0)
    e_u, e_v = (v.numpy() for v in gaze_frame(g))
    cr, co, lr = (MODEL_EYE[key] for key in ("cornea_radius", "cornea_offset", "limbus_radius"))
    h_iris, x_l = model_eye_planes()  # iris plane and cornea/globe seam, along the gaze, units of r
    c_np, g_np = c.numpy(), g.numpy()
    # cornea cap: the cornea sphere from its apex to the seam with the globe
    cV, cF, cN = cap_mesh(c_np + g_np * co * r, cr * r, g_np, e_u, e_v, (x_l - co) / cr)
    # iris disc: out to where the iris plane meets the globe, UVs over [-s, s]^2 in limbus units
    rho_max = math.sqrt(max(0.0, 1.0 - h_iris * h_iris))
    s_uv = rho_max / lr
    rings, segs = 12, 64
    pts = [np.zeros(2)] + [rho_max * i / rings * np.array([math.cos(2 * math.pi * j / segs),
                                                          math.sin(2 * math.pi * j / segs)])
                           for i in range(1, rings + 1) for j in range(segs)]
    pts = np.asarray(pts)  # [V, 2] in units of r
    iV = c_np + g_np * h_iris * r + r * (pts[:, :1] * e_u + pts[:, 1:] * e_v)
    _, iF, _ = cap_mesh(np.zeros(3), 1.0, g_np, e_u, e_v, 0.0, rings, segs)
    uvm = pts / lr  # model iris uv (unit disc = limbus)
    iUV = np.stack([(uvm[:, 0] / s_uv + 1.0) * 0.5, 1.0 - (uvm[:, 1] / s_uv + 1.0) * 0.5], -1)
    iN = np.repeat(g_np[None], len(iV), 0)
    # bake: texel centres over [-s, s]^2, row 0 = top = uv_v -s
    lin = (torch.arange(tex_size, dtype=torch.float32) + 0.5) / tex_size * 2.0 - 1.0
    vv, uu = torch.meshgrid(lin * s_uv, lin * s_uv, indexing="ij")
    uv = torch.stack([uu, vv], -1).reshape(-1, 2)
    dev = model.iris_texture[0].device
    with torch.no_grad():
        alb = model.iris_albedo(torch.full((uv.shape[0],), k, dtype=torch.long, device=dev), uv.to(dev)).cpu()
        inner = torch.sigmoid(model.cornea_inner.detach()[k]).cpu()
    alb = torch.where((uv.norm(dim=-1) <= 1.0)[:, None], alb, inner[None].expand_as(alb))
    img = to_u8(alb.reshape(tex_size, tex_size, 3).clamp(0, 1) ** (1.0 / GAMMA_TEX))
    paths = {"cornea": os.path.join(folder, "cornea.obj"), "cornea_mtl": os.path.join(folder, "cornea.mtl"),
             "iris": os.path.join(folder, "iris.obj"), "iris_mtl": os.path.join(folder, "iris.mtl"),
             "iris_texture": os.path.join(folder, "iris.png")}
    write_obj(paths["cornea"], cV, cF, mtl="cornea.mtl", material=f"{side}_cornea",
              header=f"eyefast {side} cornea: clear cap, index {MODEL_EYE['ior']} (one refracting surface), "
                     f"radius {cr * r:.6g}")
    write_mtl(paths["cornea_mtl"], f"{side}_cornea", {},
               body=("Kd 0 0 0", "Ks 1 1 1", "Ns 400", f"Ni {MODEL_EYE['ior']}", "d 0.1", "Tr 0.9", "illum 7"),
               extra="cornea: clear (transparent, refracting, index Ni); OBJ viewers without refraction show it "
                     "as a see-through gloss\n")
    write_obj(paths["iris"], iV, iF, iUV, mtl="iris.mtl", material=f"{side}_iris",
              header=f"eyefast {side} iris disc (plane {h_iris * r:.6g} in front of the eye centre)")
    write_mtl(paths["iris_mtl"], f"{side}_iris", {"map_Kd": "iris.png"}, body=("Kd 1 1 1", "Ks 0 0 0", "illum 1"),
               extra=f"iris: diffuse only (Burley roughness {IRIS_ROUGHNESS}), seen through the cornea\n")
    write_png(paths["iris_texture"], img)
    return {"paths": paths, "gaze": g_np.tolist(), "iris_plane_offset": h_iris * r, "seam_offset": x_l * r,
            "seam_radius": math.sqrt(max(0.0, 1.0 - x_l * x_l)) * r, "cornea_center":
            (c_np + g_np * co * r).tolist(), "cornea_radius": cr * r, "limbus_radius": lr * r,
            "ior": MODEL_EYE["ior"],
            "iris": {"verts": iV, "faces": iF, "uvs": iUV, "normals": iN, "tex": {"diffuse": img}},
            "mesh": {"verts": cV, "faces": cF, "normals": cN}}
