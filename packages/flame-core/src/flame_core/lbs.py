"""FLAME linear blend skinning with precomputed, fused blendshape matrices.

The math is FLAME's (and ``smplx.lbs``'s): shape + expression blendshapes, joints regressed from
the shaped mesh, pose-corrective blendshapes driven by ``R_j - I`` of the non-root joints, the
kinematic chain, then linear blend skinning. What differs is the layout, chosen so one forward
pass is a handful of large kernels:

- the shape, expression and pose-corrective bases are one ``[K, V*3]`` matrix, so all
  blendshapes are a single matrix product with the template as the bias;
- joint regression is folded into the bases (``J = J_template + J_dirs · coeffs``, ``[K_se, J*3]``),
  so the ``[J, V]`` regressor never touches the mesh at run time;
- the bases' columns are coordinate-major (all x, then all y, then all z), so the shaped mesh
  comes out as ``[B, 3, V]`` and skinning is one ``[B, 12, J] x [J, V]`` matmul plus three
  contiguous multiply-adds, instead of one tiny 4x4 matmul per vertex; large batches are skinned
  in chunks of poses so that intermediate stays small (the allocator reuses it instead of
  page-faulting fresh memory on every call);
- the chain is evaluated one tree level at a time (FLAME: root, neck, then jaw and both eyes
  together), directly as the skinning affines ``[R | J' - R J]`` (:func:`skinning_affines`);
- skinning is one autograd node (:class:`_SkinFn`) with a hand-written backward that recomputes
  the blended transforms instead of saving them, and no per-chunk ``cat`` of the output;
- on CPU in float32 the blendshape product runs through oneDNN's inner product on a weight
  reordered once into oneDNN's blocked layout (:class:`OneDnnBlend`, forward and backward): on
  the AMD EPYC (AVX-512) machine it was 1.5x (batch 1), 2.3x (batch 8) and 2.5x (batch 256)
  faster than ``torch.addmm`` (MKL sgemm) on the same matrix.

Shapes: ``B`` poses, ``V`` vertices, ``J`` joints (5 for FLAME), ``K`` basis rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flame_core._onednn import OneDnnBlend, onednn_available

__all__ = [
    "LbsBases",
    "OneDnnBlend",
    "build_bases",
    "onednn_available",
    "pose_features",
    "kinematic_levels",
    "rigid_transforms",
    "skinning_affines",
    "skin",
    "lbs",
]


@dataclass
class LbsBases:
    """Precomputed tensors for :func:`lbs` (see :func:`build_bases`).

    Attributes:
        dirs: ``[S + E + P, 3*V]`` shape rows, expression rows, pose-corrective rows; columns
            coordinate-major (``c*V + v``).
        v_template: ``[3*V]`` the template, coordinate-major.
        joint_dirs: ``[S + E, J*3]`` joint offsets per shape/expression coefficient.
        joint_template: ``[J*3]`` joints of the template.
        weights_t: ``[J, V]`` skinning weights, transposed.
        num_shape, num_expression: ``S``, ``E``.
        blend: optional fast ``coeffs [B, S+E+P] -> v_template + coeffs @ dirs`` (same result as
            the ``addmm``), used when all components are given.
    """

    dirs: torch.Tensor
    v_template: torch.Tensor
    joint_dirs: torch.Tensor
    joint_template: torch.Tensor
    weights_t: torch.Tensor
    num_shape: int
    num_expression: int
    blend: OneDnnBlend | None = None


def build_bases(
    v_template: np.ndarray,
    shapedirs: np.ndarray,
    exprdirs: np.ndarray,
    posedirs: np.ndarray,
    J_regressor: np.ndarray,
    weights: np.ndarray,
) -> LbsBases:
    """Fold FLAME's arrays into the fused layout (computed in float64, returned as float64 tensors).

    Args:
        v_template: ``[V, 3]``. shapedirs: ``[V, 3, S]``. exprdirs: ``[V, 3, E]``.
        posedirs: ``[V, 3, P]`` with ``P = 9·(J-1)``. J_regressor: ``[J, V]`` dense.
        weights: ``[V, J]``.
    """
    V = v_template.shape[0]
    S, E, P = shapedirs.shape[-1], exprdirs.shape[-1], posedirs.shape[-1]
    se = np.concatenate([shapedirs, exprdirs], -1).transpose(2, 1, 0).reshape(S + E, 3 * V)
    pose = posedirs.transpose(2, 1, 0).reshape(P, 3 * V)
    dirs = np.ascontiguousarray(np.concatenate([se, pose], 0))
    jr = np.asarray(J_regressor, np.float64)
    J = jr.shape[0]
    joint_template = jr @ v_template  # [J,3]
    joint_dirs = np.einsum("jv,vck->kjc", jr, np.concatenate([shapedirs, exprdirs], -1))  # [S+E,J,3]
    f64 = torch.float64
    return LbsBases(
        dirs=torch.from_numpy(dirs).to(f64),
        v_template=torch.from_numpy(np.ascontiguousarray(v_template.T.reshape(-1))).to(f64),
        joint_dirs=torch.from_numpy(np.ascontiguousarray(joint_dirs.reshape(S + E, 3 * J))).to(f64),
        joint_template=torch.from_numpy(np.ascontiguousarray(joint_template.reshape(-1))).to(f64),
        weights_t=torch.from_numpy(np.ascontiguousarray(weights.T)).to(f64),
        num_shape=S,
        num_expression=E,
    )


def pose_features(rotations: torch.Tensor) -> torch.Tensor:
    """Pose-corrective features ``[B, (J-1)*9]``: ``R_j - I`` of the non-root joints, row-major."""
    B, J = rotations.shape[:2]
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, 1:] - eye).reshape(B, (J - 1) * 9)


def kinematic_levels(parents: list[int]) -> list[tuple[list[int], list[int]]]:
    """Group joints by depth: ``[(children, their parents), ...]`` after the root level.

    FLAME (parents ``[-1, 0, 1, 1, 1]``) gives ``[([1], [0]), ([2, 3, 4], [1, 1, 1])]``.
    """
    if not parents or parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j):
        raise ValueError(
            f"parents must list the root (-1) first and each joint after its parent; got {parents}"
        )
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    levels = []
    for d in range(1, max(depth) + 1):
        kids = [j for j in range(len(parents)) if depth[j] == d]
        levels.append((kids, [parents[j] for j in kids]))
    return levels


def _index(ids: list[int]) -> slice | list[int]:
    """A slice when ``ids`` is a contiguous run or one repeated id (cheaper than advanced indexing)."""
    if ids == list(range(ids[0], ids[0] + len(ids))):
        return slice(ids[0], ids[0] + len(ids))
    if len(set(ids)) == 1:
        return slice(ids[0], ids[0] + 1)  # broadcasts over the children
    return ids


def rigid_transforms(
    rotations: torch.Tensor, joints: torch.Tensor, parents: list[int], levels: list | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk the kinematic chain.

    Args:
        rotations: ``[B, J, 3, 3]`` local joint rotations.
        joints: ``[B, J, 3]`` rest-pose joint positions.
        parents: ``[J]`` parent ids (root ``-1``).
        levels: :func:`kinematic_levels` of ``parents`` (computed if not given).

    Returns:
        ``(world_rotations [B, J, 3, 3], posed_joints [B, J, 3])``.
    """
    levels = kinematic_levels(parents) if levels is None else levels
    J = joints.shape[1]
    world_R: list[torch.Tensor | None] = [rotations[:, 0]] + [None] * (J - 1)
    world_t: list[torch.Tensor | None] = [joints[:, 0]] + [None] * (J - 1)
    for kids, pars in levels:
        if len(set(pars)) == 1:
            p = pars[0]
            Rp, tp = world_R[p][:, None], world_t[p][:, None]  # [B,1,3,3], [B,1,3]
        else:
            Rp = torch.stack([world_R[p] for p in pars], 1)
            tp = torch.stack([world_t[p] for p in pars], 1)
        ks, ps = _index(kids), _index(pars)
        Rk = Rp @ rotations[:, ks]  # [B,k,3,3]
        rel = joints[:, ks] - joints[:, ps]  # [B,k,3]
        tk = (Rp @ rel[..., None])[..., 0] + tp
        for i, j in enumerate(kids):
            world_R[j], world_t[j] = Rk[:, i], tk[:, i]
    return torch.stack(world_R, 1), torch.stack(world_t, 1)


def skinning_affines(
    rotations: torch.Tensor, joints: torch.Tensor, parents: list[int], levels: list | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kinematic chain as the per-joint skinning affines, in few tensor ops.

    ``A_j = [R_j | t_j]`` maps a rest-pose point skinned to joint ``j`` to its posed position
    (``t_j = J'_j - R_j J_j``, what :func:`skin` builds from :func:`rigid_transforms`). Written
    as ``A_root = C_root``, ``A_k = A_parent ∘ C_k`` with ``C_k = [R_k | J_k - R_k J_k]`` (joint
    ``k``'s local rotation about its rest position), one matmul per tree level; the posed joints
    are ``J'_k = A_k(J_k)`` (``C_k`` fixes ``J_k``).

    Args:
        rotations: ``[B, J, 3, 3]`` local joint rotations. joints: ``[B, J, 3]`` rest-pose joints.
        parents / levels: as for :func:`rigid_transforms`.

    Returns:
        ``(A [B, J, 12] rows [R_c0 R_c1 R_c2 t_c] per output coordinate c, posed_joints [B, J, 3])``.
    """
    levels = kinematic_levels(parents) if levels is None else levels
    B, J = joints.shape[:2]
    C = torch.cat([rotations, (joints - (rotations @ joints[..., None])[..., 0])[..., None]], -1)  # [B,J,3,4]
    blocks, where = [C[:, :1]], {0: (0, 0)}  # world affines per level; joint -> (block, row)
    for kids, pars in levels:
        if len(set(pars)) == 1:
            blk, row = where[pars[0]]
            Ap = blocks[blk][:, row : row + 1]  # [B,1,3,4], broadcast over the children
        else:
            Ap = torch.stack([blocks[where[p][0]][:, where[p][1]] for p in pars], 1)
        Ak = Ap[..., :3] @ C[:, _index(kids)]  # [B,k,3,4]: R_p R_k | R_p c_k
        Ak[..., 3].add_(Ap[..., 3])
        for i, j in enumerate(kids):
            where[j] = (len(blocks), i)
        blocks.append(Ak)
    order = [j for blk in ([0], *(k for k, _ in levels)) for j in blk]
    A = torch.cat(blocks, 1)
    if order != list(range(J)):
        A = A[:, [order.index(j) for j in range(J)]]
    posed = (A[..., :3] @ joints[..., None])[..., 0] + A[..., 3]
    return A.reshape(B, J, 12), posed


_CHUNK_ELEMENTS = 1 << 21  # 8 MB of float32 blended transforms per chunk


def _pose_chunks(B: int, V: int) -> list[tuple[int, int]]:
    """``[(b0, b1), ...]`` runs of poses whose blended transforms ``[b, 12, V]`` stay small.

    Chunked, the intermediate stays small enough for the allocator to reuse memory (and for the
    caches to hold it) instead of mapping and page-faulting fresh pages on every call.
    """
    step = max(1, _CHUNK_ELEMENTS // (12 * V))
    return [(b0, min(B, b0 + step)) for b0 in range(0, B, step)]


def _blended(At: torch.Tensor, weights_t: torch.Tensor, b0: int, b1: int) -> torch.Tensor:
    """Per-vertex blended ``[3, 4]`` transforms of poses ``b0:b1``: ``[b, 3, 4, V]``."""
    return torch.mm(At[b0 * 12 : b1 * 12], weights_t).view(b1 - b0, 3, 4, weights_t.shape[1])


class _SkinFn(torch.autograd.Function):
    """``verts [B, V, 3]`` from ``v_posed_t [B, 3, V]``, ``weights_t [J, V]``, ``A [B, J, 12]``.

    ``A[b, j]`` is joint ``j``'s ``[3, 4]`` affine ``[R | t]`` (row-major); ``translation [B, 3]``
    or ``None``. The blended transforms ``M = Σ_j w_j A_j`` are one ``[B*12, J] x [J, V]`` matmul
    per chunk of poses; they are not saved for backward but recomputed (cheaper than keeping
    ``12·V`` floats per pose alive). The backward is written with differentiable torch ops, so
    double backward works too.
    """

    @staticmethod
    def forward(ctx, v_posed_t, weights_t, A, translation):  # type: ignore[override]
        B, _, V = v_posed_t.shape
        At = A.transpose(1, 2).reshape(B * 12, -1)
        chunks = _pose_chunks(B, V)
        out = None if len(chunks) == 1 else v_posed_t.new_empty(B, V, 3)
        for b0, b1 in chunks:
            m0, m1, m2, m3 = _blended(At, weights_t, b0, b1).unbind(2)  # [b, 3, V] each
            x, y, z = (c[:, None] for c in v_posed_t[b0:b1].unbind(1))  # [b, 1, V] each
            if translation is not None:
                m3 = m3 + translation[b0:b1, :, None]
            o = torch.addcmul(m3, m0, x).addcmul_(m1, y).addcmul_(m2, z)  # [b, 3, V]
            if out is None:
                out = o.transpose(1, 2).contiguous()
            else:
                out[b0:b1].copy_(o.transpose(1, 2))
        ctx.save_for_backward(v_posed_t, weights_t, A)
        ctx.has_translation = translation is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        v_posed_t, weights_t, A = ctx.saved_tensors
        B, _, V = v_posed_t.shape
        J = weights_t.shape[0]
        need_v, need_w, need_a, need_t = ctx.needs_input_grad
        At = A.transpose(1, 2).reshape(B * 12, J)
        gv, ga, gw = [], [], None
        for b0, b1 in _pose_chunks(B, V):
            b = b1 - b0
            gt = grad[b0:b1].transpose(1, 2).contiguous()  # [b, 3, V]
            v = v_posed_t[b0:b1]
            if need_v:  # dL/dv_k = Σ_i M_ik g_i
                M = _blended(At, weights_t, b0, b1)
                g = M[:, 0, :3] * gt[:, 0:1]
                g = torch.addcmul(g, M[:, 1, :3], gt[:, 1:2])
                gv.append(torch.addcmul(g, M[:, 2, :3], gt[:, 2:3]))
            if need_a or need_w:  # dL/dM_ik = g_i v_k (v_3 = 1)
                G = torch.cat([gt[:, :, None] * v[:, None], gt[:, :, None]], 2).view(b * 12, V)
                if need_a:
                    ga.append((G @ weights_t.t()).view(b, 12, J).transpose(1, 2))
                if need_w:
                    gw_chunk = At[b0 * 12 : b1 * 12].t() @ G
                    gw = gw_chunk if gw is None else gw + gw_chunk
        grad_v = (gv[0] if len(gv) == 1 else torch.cat(gv, 0)) if need_v else None
        grad_a = (ga[0] if len(ga) == 1 else torch.cat(ga, 0)) if need_a else None
        grad_t = grad.sum(1) if need_t and ctx.has_translation else None
        return grad_v, gw, grad_a, grad_t


def skin(
    v_posed_t: torch.Tensor,
    weights_t: torch.Tensor,
    world_rotations: torch.Tensor,
    posed_joints: torch.Tensor,
    rest_joints: torch.Tensor,
    translation: torch.Tensor | None = None,
) -> torch.Tensor:
    """Linear blend skinning ``[B, V, 3]``: ``v' = Σ_j w_vj (R_j (v - J_j) + J'_j) + translation``.

    Args:
        v_posed_t: ``[B, 3, V]`` rest-pose vertices with blendshapes applied, coordinate-major.
        weights_t: ``[J, V]``. world_rotations: ``[B, J, 3, 3]``. posed_joints, rest_joints: ``[B, J, 3]``.
        translation: optional ``[B, 3]`` added to every vertex.
    """
    B, J = posed_joints.shape[:2]
    t = posed_joints - (world_rotations @ rest_joints[..., None])[..., 0]  # [B,J,3]
    A = torch.cat([world_rotations, t[..., None]], -1).reshape(B, J, 12)  # rows [R_c0 R_c1 R_c2 t_c]
    return _SkinFn.apply(v_posed_t, weights_t, A, translation)


def lbs(
    coeffs: torch.Tensor,
    rotations: torch.Tensor,
    bases: LbsBases,
    parents: list[int],
    levels: list | None = None,
    num_shape: int | None = None,
    num_expression: int | None = None,
    translation: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full FLAME LBS from shape/expression coefficients and local joint rotations.

    Args:
        coeffs: ``[B, S + E]`` shape then expression coefficients (the first ``num_shape`` /
            ``num_expression`` rows of the bases are used when given, see below).
        rotations: ``[B, J, 3, 3]`` local rotations (root, neck, jaw, left eye, right eye).
        bases: :class:`LbsBases` in the dtype/device of the inputs.
        parents / levels: the kinematic tree (see :func:`rigid_transforms`).
        num_shape, num_expression: how many of ``bases``' shape / expression rows ``coeffs``
            holds (default: all of them).
        translation: optional ``[B, 3]`` added to vertices and joints last.

    Returns:
        ``(vertices [B, V, 3], joints [B, J, 3])``.
    """
    S = bases.num_shape if num_shape is None else num_shape
    E = bases.num_expression if num_expression is None else num_expression
    B, J = rotations.shape[:2]
    pf = pose_features(rotations)
    if S == bases.num_shape and E == bases.num_expression:
        x = torch.cat([coeffs, pf], 1)
        v = bases.blend(x) if bases.blend is not None else torch.addmm(bases.v_template, x, bases.dirs)
        rest = torch.addmm(bases.joint_template, coeffs, bases.joint_dirs)
    else:
        s0 = bases.num_shape
        v = torch.addmm(bases.v_template, pf, bases.dirs[s0 + bases.num_expression :])
        rest = bases.joint_template.expand(B, -1)
        if S:
            v = torch.addmm(v, coeffs[:, :S], bases.dirs[:S])
            rest = torch.addmm(rest, coeffs[:, :S], bases.joint_dirs[:S])
        if E:
            v = torch.addmm(v, coeffs[:, S:], bases.dirs[s0 : s0 + E])
            rest = torch.addmm(rest, coeffs[:, S:], bases.joint_dirs[s0 : s0 + E])
    v = v.view(B, 3, -1)
    rest = rest.view(B, J, 3)
    A, posed_joints = skinning_affines(rotations, rest, parents, levels)
    verts = _SkinFn.apply(v, bases.weights_t, A, translation)
    if translation is not None:
        posed_joints = posed_joints + translation[:, None]
    return verts, posed_joints
