"""FLAME evaluated only where the landmarks are: the fitter's fast forward.

A landmark fit needs the ``L`` landmark positions of each frame, not the whole ``[T, V, 3]``
mesh. :class:`LandmarkHead` keeps only the rows of FLAME's fused blendshape bases that belong to
the vertices of the landmarks' triangles (about 1,200 of the procedural head's 5,824 vertices
for all 478 MediaPipe landmarks), and runs the same :func:`flame_core.lbs.lbs` on them. Joints
still come from the full mesh (their regression is folded into the bases), so the result equals
``embedding(model(**kw).vertices, model.faces)`` to float32 rounding.

Models that are not a :class:`flame_core.FlameModel` (anything with ``forward(**kw).vertices``
and ``faces``) are evaluated in full.
"""

from __future__ import annotations

import torch

from flame_core.landmarks import LandmarkEmbedding
from flame_core.lbs import LbsBases, lbs
from flame_core.rotations import axis_angle_to_matrix

__all__ = ["LandmarkHead", "POSE_FIELDS"]

#: The per-frame pose inputs, in FLAME's joint order (eye_pose is left then right eye).
POSE_FIELDS = ("global_orient", "neck_pose", "jaw_pose", "eye_pose")


class LandmarkHead:
    """``(shape, expression, poses) -> landmarks [T, L, 3]`` for one embedding on one model.

    Args:
        model: a ``FlameModel`` (fast path) or any head module (full evaluation).
        embedding: the landmarks (rows in the order the fitter uses).
    """

    def __init__(self, model: torch.nn.Module, embedding: LandmarkEmbedding) -> None:
        self.model = model
        self.embedding = embedding
        self._bases: LbsBases | None = None
        needed = ("dirs", "v_template", "joint_dirs", "joint_template", "lbs_weights_t", "parents")
        if all(hasattr(model, k) for k in needed) and hasattr(model, "_levels"):
            faces = torch.as_tensor(model.faces).long().cpu()
            tri = faces[embedding.face_idx.cpu()]  # [L, 3]
            verts, local = torch.unique(tri.reshape(-1), return_inverse=True)
            V = int(model.v_template.shape[0]) // 3
            cols = (torch.arange(3)[:, None] * V + verts[None]).reshape(-1)  # coordinate-major
            dev = model.v_template.device
            cols = cols.to(dev)
            self._bases = LbsBases(
                dirs=model.dirs[:, cols],
                v_template=model.v_template[cols],
                joint_dirs=model.joint_dirs,
                joint_template=model.joint_template,
                weights_t=model.lbs_weights_t[:, verts.to(dev)],
                num_shape=int(model.num_shape),
                num_expression=int(model.num_expression),
            )
            self._tri_local = local.reshape(-1, 3).to(dev)
            self.num_vertices = len(verts)

    @property
    def fast(self) -> bool:
        """Whether only the landmarks' vertices are evaluated."""
        return self._bases is not None

    def __call__(
        self,
        shape: torch.Tensor,
        expression: torch.Tensor,
        global_orient: torch.Tensor,
        neck_pose: torch.Tensor,
        jaw_pose: torch.Tensor,
        eye_pose: torch.Tensor,
    ) -> torch.Tensor:
        """Landmarks ``[T, L, 3]`` (FLAME coordinates, no translation).

        Args:
            shape: ``[T, S']``; expression: ``[T, E']`` (``S' <= S``, ``E' <= E``: the leading
                components); global_orient / neck_pose / jaw_pose: ``[T, 3]``; eye_pose: ``[T, 6]``.
        """
        if self._bases is None:
            out = self.model(
                shape=shape,
                expression=expression,
                global_orient=global_orient,
                neck_pose=neck_pose,
                jaw_pose=jaw_pose,
                eye_pose=eye_pose,
            )
            return self.embedding(out.vertices, self.model.faces)
        T = shape.shape[0]
        rot = axis_angle_to_matrix(
            torch.cat([global_orient, neck_pose, jaw_pose, eye_pose], 1).view(T, -1, 3)
        )
        b = self._bases
        S, E = shape.shape[1], expression.shape[1]
        if S > b.num_shape or E > b.num_expression:
            raise ValueError(
                f"{S} shape / {E} expression components; the model has {b.num_shape} / {b.num_expression}"
            )
        # lbs() takes the leading rows of each block when given fewer components
        verts, _ = lbs(
            torch.cat([shape, expression], 1), rot, b, self.model.parents, self.model._levels, S, E
        )
        corners = verts[:, self._tri_local]  # [T, L, 3, 3]
        w = self.embedding.bary_coords.to(verts)
        return (corners * w[None, :, :, None]).sum(2)
