"""FLAME evaluated only where the landmarks are: the fast forward of every landmark fit.

A landmark fit needs the ``L`` landmark positions of each pose, not the whole ``[T, V, 3]`` mesh.
:class:`LandmarkHead` keeps only the columns of FLAME's fused blendshape bases that belong to the
vertices of the landmarks' triangles (about 1,200 of the procedural head's 5,824 vertices for all
478 MediaPipe landmarks), and runs the same :func:`flame_core.lbs.lbs` on them. Joints still come
from the full mesh (their regression is folded into the bases), so the result equals
``embedding(model(**kw).vertices, model.faces)`` to float rounding.

It serves the video fit (:func:`flame_core.fitting.fit_to_landmarks`, all poses, autograd) and
the retargeting fit (:mod:`flame_core.retarget`, Gauss-Newton with the exact
:meth:`LandmarkHead.expression_jacobian`). Models that are not a ``FlameModel`` (anything with
``forward(**kw).vertices`` and ``faces``) are evaluated in full.
"""

from __future__ import annotations

import torch

from flame_core.landmarks import LandmarkEmbedding
from flame_core.lbs import LbsBases, lbs, skinning_affines
from flame_core.params import FlameParams
from flame_core.rotations import axis_angle_to_matrix

__all__ = ["LandmarkHead", "POSE_FIELDS"]

#: The per-frame pose inputs, in FLAME's joint order (eye_pose is left then right eye).
POSE_FIELDS = FlameParams.POSES
_BASES = ("dirs", "v_template", "joint_dirs", "joint_template", "lbs_weights_t", "parents", "_levels")


class LandmarkHead:
    """``(shape, expression, poses) -> landmarks [T, L, 3]`` for one embedding on one model.

    Args:
        model: a ``FlameModel`` (fast path) or any head module (full evaluation).
        embedding: the landmarks (rows in the order the caller uses).
    """

    def __init__(self, model: torch.nn.Module, embedding: LandmarkEmbedding) -> None:
        self.model = model
        self.embedding = embedding
        self._bases: LbsBases | None = None
        self.num_vertices = 0
        if not all(hasattr(model, k) for k in _BASES):
            return
        dev = model.v_template.device
        corners = torch.as_tensor(model.faces).long().to(dev)[embedding.face_idx.to(dev)]  # [L, 3]
        verts, local = torch.unique(corners.reshape(-1), return_inverse=True)
        V = int(model.v_template.shape[0]) // 3
        cols = (torch.arange(3, device=dev)[:, None] * V + verts[None]).reshape(-1)  # coordinate-major
        self._bases = LbsBases(
            dirs=model.dirs[:, cols].contiguous(),
            v_template=model.v_template[cols].contiguous(),
            joint_dirs=model.joint_dirs,
            joint_template=model.joint_template,
            weights_t=model.lbs_weights_t[:, verts].contiguous(),
            num_shape=int(model.num_shape),
            num_expression=int(model.num_expression),
        )
        self._corners = local.reshape(-1, 3)  # [L, 3] rows of the kept vertices
        self._bary = embedding.bary_coords.to(dev, model.v_template.dtype)
        self.num_vertices = len(verts)

    @property
    def fast(self) -> bool:
        """Whether only the landmarks' vertices are evaluated."""
        return self._bases is not None

    def to(self, dtype: torch.dtype) -> LandmarkHead:
        """Convert the kept bases to ``dtype`` in place (fast path only); returns self."""
        b = self._require_bases()
        self._bases = LbsBases(
            b.dirs.to(dtype), b.v_template.to(dtype), b.joint_dirs.to(dtype), b.joint_template.to(dtype),
            b.weights_t.to(dtype), b.num_shape, b.num_expression,
        )  # fmt: skip
        self._bary = self._bary.to(dtype)
        return self

    def __call__(
        self,
        shape: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        neck_pose: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        eye_pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Landmarks ``[T, L, 3]`` (FLAME coordinates, no translation).

        Args:
            shape: ``[T, S']``; expression: ``[T, E']`` (``S' <= S``, ``E' <= E``: the leading
                components; ``None``: none); global_orient / neck_pose / jaw_pose: ``[T, 3]``;
                eye_pose: ``[T, 6]`` (``None``: zero). At least one input must be given.
        """
        inputs = (shape, expression, global_orient, neck_pose, jaw_pose, eye_pose)
        kw = {k: v for k, v in zip(("shape", "expression", *POSE_FIELDS), inputs) if v is not None}
        if not kw:
            raise ValueError("LandmarkHead needs at least one input to know the batch size")
        if self._bases is None:
            out = self.model(**kw)
            return self.embedding(out.vertices, self.model.faces)
        ref = next(iter(kw.values()))
        T = ref.shape[0]
        b = self._bases
        empty = ref.new_zeros(T, 0)
        shape = empty if shape is None else shape
        expression = empty if expression is None else expression
        S, E = shape.shape[1], expression.shape[1]
        if S > b.num_shape or E > b.num_expression:
            raise ValueError(
                f"{S} shape / {E} expression components; the model has {b.num_shape} / {b.num_expression}"
            )
        rot = self._rotations(T, ref, global_orient, neck_pose, jaw_pose, eye_pose)
        # lbs() takes the leading rows of each block when given fewer components
        coeffs = torch.cat([shape, expression], 1)
        verts, _ = lbs(coeffs, rot, b, self.model.parents, self.model._levels, S, E)
        return (verts[:, self._corners] * self._bary[None, :, :, None]).sum(2)

    def expression_jacobian(
        self,
        jaw_pose: torch.Tensor,
        eye_pose: torch.Tensor,
        global_orient: torch.Tensor | None = None,
        neck_pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``d landmarks / d expression`` ``[K, L, 3, E]`` over all ``E`` expression components at
        the given poses (``[K, 3]`` each, eyes ``[K, 6]``; neck and global pose default to zero).

        Exact: for fixed rotations the landmarks are affine in the expression. A posed vertex is
        ``M_v (template + dirs·coeffs + pose dirs·p) + m_v`` with ``[M_v | m_v]`` the skinning
        weights' blend of the joint affines; ``M_v`` does not depend on the expression, and ``m_v``
        is linear in the rest joints, which are linear in it (``joint_dirs``). The same at any shape.
        """
        b = self._require_bases()
        K, nj = jaw_pose.shape[0], b.weights_t.shape[0]
        S, E = b.num_shape, b.num_expression
        dt, dev = jaw_pose.dtype, jaw_pose.device
        rot = self._rotations(K, jaw_pose, global_orient, neck_pose, jaw_pose, eye_pose)
        # joint affines' translations as a linear map of the rest joints: t = T · vec(J)
        unit = torch.eye(3 * nj, dtype=dt, device=dev).view(3 * nj, nj, 3)
        A_unit, _ = skinning_affines(
            rot.repeat_interleave(3 * nj, 0), unit.repeat(K, 1, 1), self.model.parents, self.model._levels
        )
        T = A_unit.view(K, 3 * nj, nj, 3, 4)[..., 3]  # [K, (j' c'), j, c]: d t_{j,c} / d J_{j',c'}
        dt_ = torch.einsum("kmjc,em->kjce", T, b.joint_dirs[S : S + E].view(E, 3 * nj))  # [K, J, 3, E]
        A0, _ = skinning_affines(
            rot, torch.zeros(K, nj, 3, dtype=dt, device=dev), self.model.parents, self.model._levels
        )
        R = A0.view(K, nj, 3, 4)[..., :3]  # rotation parts do not depend on the rest joints
        w = b.weights_t[:, self._corners]  # [J, L, 3]
        U = b.weights_t.shape[1]
        dirs = b.dirs[S : S + E].view(E, 3, U)[:, :, self._corners]  # [E, 3, L, 3 corners]
        M = torch.einsum("jlq,kjcd->klqcd", w, R)  # [K, L, 3, 3, 3]: blended rotation per corner
        jac = torch.einsum("klqcd,edlq->klqce", M, dirs) + torch.einsum("jlq,kjce->klqce", w, dt_)
        return (jac * self._bary[None, :, :, None, None]).sum(2)  # [K, L, 3, E]

    def _require_bases(self) -> LbsBases:
        if self._bases is None:
            name = type(self.model).__name__
            raise TypeError(f"{name} is not a FlameModel: only its full forward is available")
        return self._bases

    @staticmethod
    def _rotations(T: int, ref: torch.Tensor, *poses: torch.Tensor | None) -> torch.Tensor:
        """``[T, 5, 3, 3]`` joint rotations from the four pose fields (``None``: zero)."""
        sizes = (3, 3, 3, 6)
        parts = [ref.new_zeros(T, n) if p is None else p for p, n in zip(poses, sizes)]
        return axis_angle_to_matrix(torch.cat(parts, 1).view(T, -1, 3))
