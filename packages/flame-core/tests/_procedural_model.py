"""Test helper: the procedural head as a FlameModel (or, until model.py lands, a tiny private LBS)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from flame_core.procedural import build_procedural_head


def _rodrigues(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``[N,3]`` -> rotation matrices ``[N,3,3]``."""
    angle = torch.sqrt((r * r).sum(-1, keepdim=True) + 1e-16)
    k = r / angle
    kx, ky, kz = k.unbind(-1)
    z = torch.zeros_like(kx)
    K = torch.stack([z, -kz, ky, kz, z, -kx, -ky, kx, z], -1).reshape(-1, 3, 3)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=r.dtype).expand_as(K)
    return eye + s * K + (1 - c) * K @ K


class TinyFlame(torch.nn.Module):
    """Minimal FLAME LBS (no pose correctives) over a FLAME-format dict, same call signature."""

    def __init__(self, d: dict, embedding=None) -> None:
        super().__init__()
        f64 = torch.float32
        self.register_buffer("v_template", torch.as_tensor(d["v_template"], dtype=f64))
        self.register_buffer("shapedirs", torch.as_tensor(d["shapedirs"], dtype=f64))
        self.register_buffer("J_regressor", torch.as_tensor(d["J_regressor"], dtype=f64))
        self.register_buffer("weights", torch.as_tensor(d["weights"], dtype=f64))
        self.register_buffer("faces", torch.as_tensor(d["f"], dtype=torch.long))
        self.parents = [-1, 0, 1, 1, 1]
        self.num_shape, self.num_expression = 300, 100
        self.landmark_embedding = embedding

    def forward(
        self,
        shape=None,
        expression=None,
        global_orient=None,
        neck_pose=None,
        jaw_pose=None,
        eye_pose=None,
        translation=None,
    ):
        args = [
            a
            for a in (shape, expression, global_orient, neck_pose, jaw_pose, eye_pose, translation)
            if a is not None
        ]
        B = args[0].shape[0] if args else 1
        dt = self.v_template.dtype
        z = lambda n: torch.zeros(B, n, dtype=dt)  # noqa: E731
        shape = z(300) if shape is None else shape
        expression = z(100) if expression is None else expression
        beta = torch.cat(
            [
                torch.nn.functional.pad(shape, (0, 300 - shape.shape[1])),
                torch.nn.functional.pad(expression, (0, 100 - expression.shape[1])),
            ],
            1,
        )
        v = self.v_template + torch.einsum("vck,bk->bvc", self.shapedirs, beta)
        J = torch.einsum("jv,bvc->bjc", self.J_regressor, v)
        eye = z(6) if eye_pose is None else eye_pose
        pose = torch.stack(
            [
                z(3) if global_orient is None else global_orient,
                z(3) if neck_pose is None else neck_pose,
                z(3) if jaw_pose is None else jaw_pose,
                eye[:, :3],
                eye[:, 3:],
            ],
            1,
        )
        R = _rodrigues(pose.reshape(-1, 3)).reshape(B, 5, 3, 3)
        Gs = []
        for j in range(5):
            T = torch.eye(4, dtype=dt).repeat(B, 1, 1)
            T[:, :3, :3] = R[:, j]
            p = self.parents[j]
            T[:, :3, 3] = J[:, j] - (J[:, p] if p >= 0 else 0)
            Gs.append(T if p < 0 else Gs[p] @ T)
        G = torch.stack(Gs, 1)
        joints = G[:, :, :3, 3]
        A = G.clone()
        A[:, :, :3, 3] = joints - (G[:, :, :3, :3] @ J[..., None])[..., 0]
        M = torch.einsum("vj,bjxy->bvxy", self.weights, A)
        out = (M[:, :, :3, :3] @ v[..., None])[..., 0] + M[:, :, :3, 3]
        if translation is not None:
            out = out + translation[:, None]
            joints = joints + translation[:, None]
        return SimpleNamespace(vertices=out, joints=joints)


def procedural_model():
    """The procedural head as FlameModel when available, else TinyFlame."""
    head = build_procedural_head()
    try:
        from flame_core.model import FlameModel

        return FlameModel.procedural()
    except ImportError:
        return TinyFlame(head.model_dict, head.embedding)


__all__ = ["TinyFlame", "procedural_model", "np"]
