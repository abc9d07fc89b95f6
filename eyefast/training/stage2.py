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
    only faces seen inside the training masks, largest component, small holes filled). Each step
    rasterises it in :attr:`VIEWS` random training views (memory independent of the capture's size).

    ``verts [V, 3]`` float32 and ``faces [F, 3]`` int64 (kept on the CPU for checkpoints; a copy on
    ``cap.device`` for rasterising)."""

    VIEWS = 4  # training views rasterised per stage-2 step

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, cap):
        self.verts, self.faces = verts.cpu(), faces.cpu()
        self.cap = cap
        self.v = verts.to(cap.device).contiguous()
        self.f = faces.to(cap.device).contiguous()
        self.near, self.far = near_far(cap.cam_centers, self.v)

    @classmethod
    def extract(cls, model, cap, bound: float, resolution: int, quiet: bool = True):
        """The mesh of the model's face SDF; returns ``(Stage2, stats)`` (face counts of each stage)."""
        mesh, stats = clipped_face_mesh(model, cap, bound, resolution, quiet=quiet)
        verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
        faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)
        return cls(verts, faces, cap), stats

    def state(self) -> dict:
        return {"verts": self.verts, "faces": self.faces}

    def pixels(self, n: int, generator):
        """``n`` random (frame, pixel, surface point) triples: pixels covered by the mesh inside the mask
        and outside the eyes of :attr:`VIEWS` random training views."""
        cap = self.cap
        frames = torch.randint(0, cap.n_frames, (self.VIEWS,), generator=generator).tolist()
        fr, pix, pts = [], [], []
        for i in frames:
            clip = ops.project_to_clip(self.v, cap.K, cap.w2c[i], cap.H, cap.W, near=self.near, far=self.far)
            p2f, bary, _ = ops.rasterize(clip, self.f, cap.H, cap.W)
            keep = ((p2f >= 0) & (cap.masks["mask"][i] > 127) & (cap.masks["leye_mask"][i] <= 127)
                    & (cap.masks["reye_mask"][i] <= 127))
            yx = torch.nonzero(keep)
            fr.append(torch.full((yx.shape[0],), i, dtype=torch.long, device=cap.device))
            pix.append(yx.flip(-1))
            pts.append(ops.interpolate(self.v, self.f, p2f, bary)[keep])
        fr, pix, pts = torch.cat(fr), torch.cat(pix), torch.cat(pts)
        if fr.shape[0] == 0:
            raise RuntimeError(f"stage 2: the face mesh covers no masked pixel of training views {frames}")
        sel = torch.randint(0, fr.shape[0], (n,), generator=generator).to(cap.device)
        return fr[sel], pix[sel], pts[sel]

    def terms(self, model, light: dict, n: int, generator, loss_cfg):
        """The stage-2 loss on ``n`` mesh pixels: L1 + the hair and specular-prior (``w_abdmm_refine``)
        terms, shaded with the SDF normals; only the material network is in the graph. Returns
        ``(loss, terms, rgb, target)``."""
        L = loss_cfg
        cap = self.cap
        fr, pix, x = self.pixels(n, generator)
        nrm = F.normalize(model.face_with_gradient(x, create_graph=False)[2], dim=-1)
        b = cap.gather(fr, pix)
        fids = cap.frame_ids.to(cap.device)[fr]
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
