"""Rotation conversions against scipy, near zero and near pi, with gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flame_core.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    compose_axis_angle,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    quaternion_slerp,
    quaternion_to_axis_angle,
)
from scipy.spatial.transform import Rotation


def _rotvecs(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * 3.1
    return axis * angle


def test_matrix_matches_scipy():
    r = _rotvecs(64)
    ref = Rotation.from_rotvec(r.numpy()).as_matrix()
    np.testing.assert_allclose(axis_angle_to_matrix(r).numpy(), ref, atol=1e-12)
    q = Rotation.from_rotvec(r.numpy()).as_quat()  # xyzw
    np.testing.assert_allclose(axis_angle_to_quaternion(r).numpy(), np.c_[q[:, 3:], q[:, :3]], atol=1e-12)


def test_batch_shapes_and_dtypes():
    r = torch.zeros(2, 5, 3)
    R = axis_angle_to_matrix(r)
    assert R.shape == (2, 5, 3, 3) and R.dtype == torch.float32
    torch.testing.assert_close(R, torch.eye(3).expand(2, 5, 3, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        axis_angle_to_matrix(torch.zeros(4, 2))


@pytest.mark.parametrize("scale", [0.0, 1e-12, 1e-7, 1e-4, 1e-2])
def test_stable_near_zero(scale):
    r = (_rotvecs(16, 1) / 3.1 * scale).requires_grad_()
    R = axis_angle_to_matrix(r)
    ref = Rotation.from_rotvec(r.detach().numpy()).as_matrix()
    np.testing.assert_allclose(R.detach().numpy(), ref, atol=1e-15)
    (g,) = torch.autograd.grad(R.sum(), r)
    assert torch.isfinite(g).all()
    # d/dr of sum(R) at r = 0 is sum of the skew generators: exactly (0, 0, 0) -> finite check above,
    # and the Jacobian matches finite differences everywhere
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (r[:3].detach().clone().requires_grad_(),))


def test_gradcheck_generic_angles():
    r = _rotvecs(4, 2).requires_grad_()
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (r,))
    assert torch.autograd.gradcheck(
        matrix_to_axis_angle, (axis_angle_to_matrix(r.detach()).requires_grad_(),)
    )


def test_matrix_to_axis_angle_roundtrip_including_near_pi():
    r = _rotvecs(200, 3)
    axis = torch.nn.functional.normalize(torch.randn(8, 3, dtype=torch.float64), dim=-1)
    near_pi = (
        axis
        * (torch.pi - torch.tensor([0.0, 1e-9, 1e-6, 1e-3, 0.0, 1e-9, 1e-6, 1e-3], dtype=torch.float64))[
            :, None
        ]
    )
    small = axis * 1e-9
    r = torch.cat([r, near_pi, small, torch.zeros(1, 3, dtype=torch.float64)])
    R = axis_angle_to_matrix(r)
    back = matrix_to_axis_angle(R)
    torch.testing.assert_close(axis_angle_to_matrix(back), R, atol=1e-9, rtol=0)
    assert (back.norm(dim=-1) <= torch.pi + 1e-9).all()
    q = matrix_to_quaternion(R)
    ref = Rotation.from_matrix(R.numpy()).as_quat()
    ref = np.c_[ref[:, 3:], ref[:, :3]]
    ref *= np.where(ref[:, :1] < 0, -1, 1)
    np.testing.assert_allclose(np.abs((q.numpy() * ref).sum(1)), 1.0, atol=1e-9)


def test_quaternion_to_axis_angle_small_and_sign():
    r = torch.tensor([[1e-10, 0, 0], [0.3, -0.2, 0.1]], dtype=torch.float64)
    q = axis_angle_to_quaternion(r)
    torch.testing.assert_close(quaternion_to_axis_angle(q), r)
    torch.testing.assert_close(quaternion_to_axis_angle(-q), r)  # q and -q are the same rotation


def test_slerp_endpoints_and_midpoint():
    a, b = _rotvecs(5, 4), _rotvecs(5, 5)
    qa, qb = axis_angle_to_quaternion(a), axis_angle_to_quaternion(b)
    t0, t1, th = (torch.full((5,), v, dtype=torch.float64) for v in (0.0, 1.0, 0.5))
    torch.testing.assert_close(quaternion_to_axis_angle(quaternion_slerp(qa, qb, t0)), a)
    R_end = axis_angle_to_matrix(quaternion_to_axis_angle(quaternion_slerp(qa, qb, t1)))
    torch.testing.assert_close(R_end, axis_angle_to_matrix(b))
    mid = axis_angle_to_matrix(quaternion_to_axis_angle(quaternion_slerp(qa, qb, th)))
    Ra, Rb = axis_angle_to_matrix(a), axis_angle_to_matrix(b)
    # the midpoint is equally far (geodesically) from both ends
    da = matrix_to_axis_angle(Ra.transpose(-1, -2) @ mid).norm(dim=-1)
    db = matrix_to_axis_angle(mid.transpose(-1, -2) @ Rb).norm(dim=-1)
    torch.testing.assert_close(da, db)
    same = quaternion_slerp(qa, qa, th)  # identical ends: no division by zero
    torch.testing.assert_close(same, qa)


def test_compose_order():
    a, b = _rotvecs(6, 6), _rotvecs(6, 7)
    ref = (Rotation.from_rotvec(a.numpy()) * Rotation.from_rotvec(b.numpy())).as_matrix()
    np.testing.assert_allclose(axis_angle_to_matrix(compose_axis_angle(a, b)).numpy(), ref, atol=1e-10)
