"""The second training stage (docs/method.md section 5): the material network alone, trained on a fixed
face mesh rasterised in the training views."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ops
from ..geometry.mesh import clipped_face_mesh, near_far
from ..scene import shading as S

__all__ = ["Stage2"]


class Stage2:
    """The stage-2 mesh: the face mesh (marching cubes at ``train.mesh_resolution``^3, decimated by half,
    only faces seen inside the training masks, largest component, small holes filled), rasterised once
    in every training view when stage 2 starts. The pixels it covers inside the mask and outside the
    eyes (at most :attr:`MAX_PER_VIEW` per view, drawn at random) form a pool; each step draws its pixels
    from the pool on the device and intersects their rays with the face each pixel shows: no
    rasterising and no host sync in the step.

    ``verts [V, 3]`` float32 and ``faces [F, 3]`` int64 (kept on the CPU for checkpoints; a copy on
    ``cap.device`` for the step)."""

    MAX_PER_VIEW = 1 << 16  # pool pixels per view (bounds the pool's memory at 12 bytes a pixel)

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, cap, seed: int = 0):
        self.verts, self.faces = verts.cpu(), faces.cpu()
        self.cap = cap
        self.v = verts.to(cap.device).contiguous()
        self.f = faces.to(cap.device).contiguous()
        self.near, self.far = near_far(cap.cam_centers, self.v)
        self._make_pool(seed)

    @classmethod
    def extract(cls, model, cap, bound: float, resolution: int, quiet: bool = True, seed: int = 0):
        """The mesh of the model's face SDF; returns ``(Stage2, stats)`` (face counts of each stage and
        ``pixels``, the pool's size)."""
        mesh, stats = clipped_face_mesh(model, cap, bound, resolution, quiet=quiet)
        verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
        faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)
        st = cls(verts, faces, cap, seed)
        return st, {**stats, "pixels": st.n_pixels}

    def state(self) -> dict:
        return {"verts": self.verts, "faces": self.faces}

    @torch.no_grad()
    def _make_pool(self, seed: int) -> None:
        cap = self.cap
        g = torch.Generator(device=cap.device).manual_seed(int(seed) * 7919 + 17)
        frames, pix, face = [], [], []
        for i in range(cap.n_frames):
            clip = ops.project_to_clip(self.v, cap.K, cap.w2c[i], cap.H, cap.W, near=self.near, far=self.far)
            p2f, _, _ = ops.rasterize(clip, self.f, cap.H, cap.W)
            keep = ((p2f >= 0) & (cap.masks["mask"][i] > 127) & (cap.masks["leye_mask"][i] <= 127)
                    & (cap.masks["reye_mask"][i] <= 127)).reshape(-1)
            lin = torch.nonzero(keep).squeeze(-1)
            if lin.numel() > self.MAX_PER_VIEW:
                lin = lin[torch.randperm(lin.numel(), generator=g, device=cap.device)[: self.MAX_PER_VIEW]]
            frames.append(torch.full((lin.numel(),), i, dtype=torch.int32, device=cap.device))
            pix.append(lin.to(torch.int32))
            face.append(p2f.reshape(-1)[lin].to(torch.int32))
        self.pool_frame, self.pool_pix, self.pool_face = torch.cat(frames), torch.cat(pix), torch.cat(face)
        self.n_pixels = int(self.pool_frame.numel())
        if self.n_pixels == 0:
            raise RuntimeError("stage 2: the face mesh covers no masked pixel of any training view")

    def pixels(self, n: int, generator):
        """``n`` random (frame, pixel xy, surface point) triples from the pool: the surface point is where
        the pixel's ray meets the plane of the face the pixel shows (what rasterising gives)."""
        cap = self.cap
        sel = torch.randint(0, self.n_pixels, (n,), generator=generator, device=cap.device)
        fr = self.pool_frame[sel].long()
        lin = self.pool_pix[sel].long()
        xy = torch.stack([lin % cap.W, lin // cap.W], -1)
        tri = self.v[self.f[self.pool_face[sel].long()]]  # [n, 3, 3]
        o, d = cap.rays(fr, xy, check=False)
        nrm = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        t = ((tri[:, 0] - o) * nrm).sum(-1) / (d * nrm).sum(-1)
        return fr, xy, o + t[:, None] * d

    def terms(self, model, light: dict, n: int, generator, loss_cfg):
        """The stage-2 loss on ``n`` mesh pixels: L1 + the hair and specular-prior (``w_abdmm_refine``)
        terms, shaded with the SDF normals; only the material network is in the graph. Returns
        ``(loss, terms, rgb, target)``."""
        L = loss_cfg
        cap = self.cap
        fr, pix, x = self.pixels(n, generator)
        nrm = F.normalize(model.face_with_gradient(x, create_graph=False)[2], dim=-1)
        b = cap.gather(fr, pix, check=False)
        fids = cap.frame_ids[fr]
        albedo, spec, rough = model.material(x)
        with torch.no_grad():
            occ = model.occlusion(fids)[:, None]
        shade = S.shade_colocated(x, nrm, b["rays_o"], albedo, spec[:, None], rough[:, None], light["color"],
                                  light["intensity"], model.light_scale.detach(), model.sh_coeffs.detach(),
                                  model.sh_beta, occ, model.sh_scale)
        target, hair = b["rgb"], b["hair_mask"]
        m = b["mask"] * (1.0 - hair)
        terms = {"l1": (shade["rgb"] - target).abs().mean(), "reg_diff": (spec * hair).mean(),
                 "abdmm_refine": (spec * model.light_scale.detach() * m - b["specular_bfm"] * m).abs().mean()}
        loss = L.w_l1 * terms["l1"] + L.w_reg_diff * terms["reg_diff"] + L.w_abdmm_refine * terms["abdmm_refine"]
        return loss, terms, shade["rgb"], target
