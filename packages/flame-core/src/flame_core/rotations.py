"""Batched rotation conversions (axis-angle, matrices, wxyz quaternions), differentiable and
float64-safe.

Every function takes any number of leading batch dimensions. Axis-angle vectors are ``[..., 3]``
(direction = axis, norm = angle in radians), matrices ``[..., 3, 3]`` act on column vectors,
quaternions are ``[..., 4]`` in wxyz order.
"""

from __future__ import annotations

import torch

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "quaternion_to_axis_angle",
    "axis_angle_to_quaternion",
    "quaternion_slerp",
    "compose_axis_angle",
]

# Below this squared angle the Taylor series of sin(t)/t and (1 - cos(t))/t^2 are exact to
# float64 rounding (the next terms are ~t^6/5040 and ~t^6/40320).
_SMALL_SQ = 1e-6


def _sinc_terms(theta_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sin(t)/t, (1-cos(t))/t^2)`` for ``t^2 = theta_sq``, stable (and with finite gradients) at 0."""
    small = theta_sq < _SMALL_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = torch.sqrt(safe_sq)
    a_big = torch.sin(theta) / theta
    b_big = (1.0 - torch.cos(theta)) / safe_sq
    a_small = 1.0 - theta_sq / 6.0 + theta_sq * theta_sq / 120.0
    b_small = 0.5 - theta_sq / 24.0 + theta_sq * theta_sq / 720.0
    return torch.where(small, a_small, a_big), torch.where(small, b_small, b_big)


_SKEW_CACHE: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _skew_and_eye(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S [3, 9], I [9])``: ``r @ S`` is ``r``'s cross-product matrix (row-major); ``I`` the identity."""
    key = (dtype, device)
    if key not in _SKEW_CACHE:
        skew = torch.zeros(3, 9, dtype=torch.float64)
        # K = [[0, -z, y], [z, 0, -x], [-y, x, 0]] for r = (x, y, z)
        for axis, entry, sign in ((2, 1, -1), (1, 2, 1), (2, 3, 1), (0, 5, -1), (1, 6, -1), (0, 7, 1)):
            skew[axis, entry] = sign
        eye = torch.eye(3, dtype=torch.float64).reshape(9)
        _SKEW_CACHE[key] = (skew.to(device=device, dtype=dtype), eye.to(device=device, dtype=dtype))
    return _SKEW_CACHE[key]


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: ``rotvec [..., 3]`` -> rotation matrices ``[..., 3, 3]``.

    ``R = I + a·K + b·K²`` with ``K`` the cross-product matrix of ``rotvec`` (not normalised),
    ``a = sin(t)/t``, ``b = (1 - cos t)/t²``, so the zero rotation and its gradient are exact.
    ``K² = r rᵀ - |r|² I`` and ``K = r @ S`` (a constant ``[3, 9]`` map), so the whole batch is a
    handful of tensor ops (this runs on every FLAME forward, where op count is the cost).
    """
    if rotvec.shape[-1] != 3:
        raise ValueError(f"rotvec must be [..., 3]; got {tuple(rotvec.shape)}")
    if not rotvec.dtype.is_floating_point:
        rotvec = rotvec.to(torch.get_default_dtype())
    skew, eye = _skew_and_eye(rotvec.dtype, rotvec.device)
    outer = (rotvec[..., :, None] * rotvec[..., None, :]).flatten(-2)  # r rᵀ, [..., 9]
    theta_sq = (rotvec * rotvec).sum(-1, keepdim=True)  # [..., 1]
    a, b = _sinc_terms(theta_sq)
    k2 = outer - theta_sq * eye
    m = torch.addcmul(torch.addcmul(eye, a, rotvec @ skew), b, k2)
    return m.reshape(*rotvec.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` (wxyz, w >= 0).

    Picks, per matrix, the best-conditioned of the four Shepperd candidates, so it is exact near
    180° as well as near the identity.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must be [..., 3, 3]; got {tuple(matrix.shape)}")
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace4 = torch.stack(
        [1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22], -1
    )
    r = torch.sqrt(trace4.clamp_min(1e-12))  # 2·|component| for each candidate
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    cands = torch.stack(
        [
            torch.stack([r[..., 0] ** 2, d21, d02, d10], -1) / (2.0 * r[..., 0:1]),
            torch.stack([d21, r[..., 1] ** 2, s01, s02], -1) / (2.0 * r[..., 1:2]),
            torch.stack([d02, s01, r[..., 2] ** 2, s12], -1) / (2.0 * r[..., 2:3]),
            torch.stack([d10, s02, s12, r[..., 3] ** 2], -1) / (2.0 * r[..., 3:4]),
        ],
        -2,
    )  # [..., 4, 4]
    best = trace4.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(quat: torch.Tensor) -> torch.Tensor:
    """Quaternions ``[..., 4]`` (wxyz, any norm) -> axis-angle ``[..., 3]`` with angle in ``[0, π]``."""
    if quat.shape[-1] != 4:
        raise ValueError(f"quat must be [..., 4] (wxyz); got {tuple(quat.shape)}")
    q = quat / quat.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, xyz = q[..., 0], q[..., 1:]
    s_sq = (xyz * xyz).sum(-1)
    small = s_sq < 1e-12
    s = torch.sqrt(torch.where(small, torch.ones_like(s_sq), s_sq))
    half = torch.atan2(s, w)
    # angle / sin(angle/2) -> 2/w (1 + s²/(3w²)) as s -> 0 (here w ≈ 1)
    factor = torch.where(small, 2.0 / w * (1.0 + s_sq / (3.0 * w * w)), 2.0 * half / s)
    return xyz * factor[..., None]


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> axis-angle ``[..., 3]`` (angle in ``[0, π]``)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def axis_angle_to_quaternion(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``[..., 3]`` -> unit quaternions ``[..., 4]`` (wxyz)."""
    if rotvec.shape[-1] != 3:
        raise ValueError(f"rotvec must be [..., 3]; got {tuple(rotvec.shape)}")
    theta_sq = (rotvec * rotvec).sum(-1)
    small = theta_sq < _SMALL_SQ
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    half_sinc = torch.where(small, 0.5 - theta_sq / 48.0, torch.sin(0.5 * theta) / theta)
    w = torch.where(small, 1.0 - theta_sq / 8.0, torch.cos(0.5 * theta))
    return torch.cat([w[..., None], rotvec * half_sinc[..., None]], -1)


def quaternion_slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation ``[..., 4]`` between unit quaternions (shortest arc), ``t [...]``."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    t = t[..., None]
    omega = torch.acos(dot)
    sin_o = torch.sin(omega)
    near = sin_o < 1e-6
    safe = torch.where(near, torch.ones_like(sin_o), sin_o)
    w0 = torch.where(near, 1.0 - t, torch.sin((1.0 - t) * omega) / safe)
    w1 = torch.where(near, t, torch.sin(t * omega) / safe)
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


def compose_axis_angle(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Axis-angle of ``R(first) @ R(second)`` (apply ``second``, then ``first``), ``[..., 3]``."""
    return matrix_to_axis_angle(axis_angle_to_matrix(first) @ axis_angle_to_matrix(second))
