"""Camera refinement (``train.camera_refine``): a learned SE(3) correction per training frame.

Cameras from structure from motion carry errors of a tenth of a degree and a few tenths of a percent
of their distance; a head reconstructed through them loses sharpness. Each training frame ``f`` gets a
correction ``delta[f] = (w, t)``: a rotation vector ``w`` and a translation ``t``, both in the frame's
own camera coordinates, so its camera-to-world becomes ``c2w[f] @ [[R(w), t], [0, 1]]``. The
corrections applied are the learned ones minus their mean over the training frames: the capture's
frame (where the head, its landmarks and its eye centres are) stays where it was.

A ray of frame ``f`` with origin ``o`` and direction ``d`` (world) becomes ``o + R_f t`` and
``R_f R(w) R_f^T d`` (``R_f`` the frame's camera rotation): one batched computation for all rays.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CameraCorrections", "rotation_matrix"]


def rotation_matrix(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation vectors ``[..., 3]`` -> rotation matrices ``[..., 3, 3]`` (differentiable,
    exact at 0)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = theta2 < 1e-8
    t2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = t2.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)  # sin(x) / x
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / t2)  # (1 - cos x) / x^2
    wx, wy, wz = w.unbind(-1)
    z = torch.zeros_like(wx)
    K = torch.stack([z, -wz, wy, wz, z, -wx, -wy, wx, z], -1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(K)
    return eye + a * K + b * (K @ K)


class CameraCorrections(nn.Module):
    """``delta [n_frames, 6]`` (rotation vector, translation; camera coordinates), trained for the frames
    marked in ``trained`` (the training split), zero for the others. See the module docstring."""

    def __init__(self, n_frames: int):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(n_frames, 6))
        self.register_buffer("trained", torch.zeros(n_frames, dtype=torch.bool))

    def effective(self) -> torch.Tensor:
        """``[n_frames, 6]``: the corrections applied: zero mean over the trained frames, 0 elsewhere
        (no host sync)."""
        m = self.trained.to(self.delta.dtype)[:, None]
        mean = (self.delta * m).sum(0) / m.sum().clamp_min(1.0)
        return (self.delta - mean) * m

    def penalty(self) -> torch.Tensor:
        """The mean squared correction over the trained frames (the L2 term of ``loss.w_camera``)."""
        m = self.trained.to(self.delta.dtype)[:, None]
        return (self.effective() ** 2 * m).sum() / (6.0 * m.sum().clamp_min(1.0))

    def correct_rays(self, rays_o: torch.Tensor, rays_d: torch.Tensor, frame_ids: torch.Tensor,
                     cam_rot: torch.Tensor):
        """Rays ``[N, 3]`` of global frames ``frame_ids [N]`` whose cameras' rotations are ``cam_rot
        [N, 3, 3]`` (camera-to-world), moved with their frames' cameras."""
        e = self.effective()[frame_ids].to(rays_o.dtype)
        R = rotation_matrix(e[:, :3])
        rot = cam_rot.to(rays_o.dtype)
        d_cam = (rot.transpose(1, 2) @ rays_d[:, :, None])
        d = (rot @ (R @ d_cam))[:, :, 0]
        o = rays_o + (rot @ e[:, 3:, None])[:, :, 0]
        return o, d

    @torch.no_grad()
    def refine(self, c2w: torch.Tensor, frame_ids: torch.Tensor) -> torch.Tensor:
        """Camera-to-world matrices ``[F, 4, 4]`` of global frames ``frame_ids [F]``, corrected."""
        e = self.effective()[frame_ids].to(c2w.dtype)
        D = torch.eye(4, dtype=c2w.dtype, device=c2w.device).repeat(e.shape[0], 1, 1)
        D[:, :3, :3] = rotation_matrix(e[:, :3])
        D[:, :3, 3] = e[:, 3:]
        return c2w @ D
