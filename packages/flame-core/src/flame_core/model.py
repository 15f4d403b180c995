"""``FlameModel``: the FLAME head model as a ``torch.nn.Module`` (official file or procedural head).

Example::

    model = FlameModel.resolve()                 # HEADSTUDIO_FLAME_PATH, else the procedural head
    out = model(expression=psi, jaw_pose=jaw)    # psi [B, <=100], jaw [B, 3]
    out.vertices  # [B, V, 3]    out.joints  # [B, 5, 3]    model.faces  # [F, 3] int64
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flame_core.landmarks import Flame68Embedding, LandmarkEmbedding
from flame_core.lbs import LbsBases, OneDnnBlend, kinematic_levels, lbs, onednn_available
from flame_core.model_sources import (
    bases_from_dict,
    hash_arrays,
    procedural_parts,
    read_flame_files,
    split_shapedirs,
)
from flame_core.mouth_interior import MouthInterior
from flame_core.params import FlameParams
from flame_core.rotations import axis_angle_to_matrix

log = logging.getLogger(__name__)

__all__ = ["FlameModel", "FlameOutput", "FLAME_PATH_ENV", "split_shapedirs"]

FLAME_PATH_ENV = "HEADSTUDIO_FLAME_PATH"
_POSE_ARGS = FlameParams.ROTATIONS


@dataclass
class FlameOutput:
    """Result of :meth:`FlameModel.forward`.

    Attributes:
        vertices: ``[B, V, 3]`` posed vertices (translation applied).
        joints: ``[B, 5, 3]`` posed joints: root, neck, jaw, left eye, right eye.
    """

    vertices: torch.Tensor
    joints: torch.Tensor


class FlameModel(torch.nn.Module):
    """FLAME: shape/expression/pose-corrective blendshapes, 5-joint chain, linear blend skinning.

    Build with :meth:`from_file`, :meth:`procedural` or :meth:`resolve`. Batched, differentiable
    in every input, float32 or float64 (``model.to(torch.float64)``), CPU or CUDA.

    Attributes:
        faces: ``[F, 3]`` int64 buffer.
        landmark_embedding: MediaPipe landmark embedding or ``None`` (the procedural head always
            has its 478-row embedding; :meth:`from_file` completes a file's embedding with the
            face oval and irises derived from the model).
        derived_landmark_ids: MediaPipe ids of the rows :meth:`from_file` derived from the model
            (face oval, irises) rather than read from the embedding file; retargeting fits only the
            measured rows (empty for the procedural head and for files that have every row).
        flame68_embedding: FLAME's 68-point static+dynamic embedding when the model's folder has
            ``flame_static_embedding.pkl`` and ``flame_dynamic_embedding.npy`` (:meth:`from_file`),
            else ``None``.
        source: ``"procedural"`` or the model file's path.
        mouth_interior: the teeth, tongue and oral cavity appended to the mesh
            (:mod:`flame_core.mouth_interior`; the procedural head's default,
            ``mouth_interior=True`` in :meth:`from_file`), else ``None``. Its faces are
            ``faces[num_base_faces:]``.
        num_base_faces: faces of the model itself; the landmark embedding indexes only these.
        use_onednn: on CPU in float32, run the blendshape product through oneDNN (same result to
            float32 rounding, forward and backward; default ``True``; set ``False`` to use
            ``torch.addmm``). Costs one extra float32 copy of the blendshapes (in oneDNN's
            layout), made on first use, and a second one on the first backward.
    """

    faces: torch.Tensor

    def __init__(
        self,
        model_dict: dict[str, np.ndarray],
        num_shape: int = 300,
        num_expression: int = 100,
        dtype: torch.dtype = torch.float32,
        landmark_embedding: LandmarkEmbedding | None = None,
        source: str = "custom",
        _bases: LbsBases | None = None,
        _identity: str | None = None,
    ) -> None:
        """Build from a dict in :func:`flame_core.io.load_flame_pickle`'s layout.

        Args:
            model_dict: the FLAME arrays (validated by the loader).
            num_shape / num_expression: components kept (at most what the file has).
            dtype: float32 or float64.
            landmark_embedding: optional MediaPipe embedding on this mesh.
            source: a label kept in :attr:`source`.
        """
        super().__init__()
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch dtype; got {dtype}")
        if num_shape < 0 or num_expression < 0:
            raise ValueError(f"num_shape and num_expression must be >= 0; got {num_shape}, {num_expression}")
        file_s, file_e = split_shapedirs(model_dict["shapedirs"].shape[-1])
        if num_shape > file_s or num_expression > file_e:
            log.info(
                "%s has %d shape and %d expression components; using %d and %d",
                source,
                file_s,
                file_e,
                min(num_shape, file_s),
                min(num_expression, file_e),
            )
        bases = _bases or bases_from_dict(model_dict, num_shape, num_expression)
        self._num_shape, self._num_expression = bases.num_shape, bases.num_expression
        kt = np.asarray(model_dict["kintree_table"], np.int64)
        self.parents = [-1] + [int(p) for p in kt[0, 1:]]
        self._levels = kinematic_levels(self.parents)
        self.source = source
        self.use_onednn = True
        self._blend: OneDnnBlend | None = None
        self.landmark_embedding = landmark_embedding
        self.flame68_embedding: Flame68Embedding | None = None
        self.derived_landmark_ids: frozenset[int] = frozenset()
        self.mouth_interior: MouthInterior | None = None
        self.num_base_faces = int(np.asarray(model_dict["f"]).shape[0])
        self._identity_hash = _identity or hash_arrays(model_dict)
        self.register_buffer("dirs", bases.dirs.to(dtype, copy=True), persistent=False)
        self.register_buffer("v_template", bases.v_template.to(dtype, copy=True), persistent=False)
        self.register_buffer("joint_dirs", bases.joint_dirs.to(dtype, copy=True), persistent=False)
        self.register_buffer("joint_template", bases.joint_template.to(dtype, copy=True), persistent=False)
        self.register_buffer("lbs_weights_t", bases.weights_t.to(dtype, copy=True), persistent=False)
        self.register_buffer(
            "faces", torch.as_tensor(np.asarray(model_dict["f"], np.int64)).clone(), persistent=False
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        num_shape: int = 300,
        num_expression: int = 100,
        dtype: torch.dtype = torch.float32,
        landmark_embedding: LandmarkEmbedding | str | os.PathLike | None = None,
        derive_landmarks: bool = True,
        mouth_interior: bool = False,
    ) -> FlameModel:
        """Load an official FLAME 2020/2023 pickle (no chumpy needed) or one we saved.

        Args:
            path: the ``.pkl`` file, or a directory holding one of ``flame2023.pkl``,
                ``generic_model.pkl``, ``FLAME_NEUTRAL.pkl``.
            landmark_embedding: a :class:`LandmarkEmbedding`, a path to one, or ``None`` (then
                ``mediapipe_landmark_embedding.npz`` beside the model is used if present).
                FLAME's 68-point embedding files beside the model, when both are there, become
                :attr:`flame68_embedding`.
            derive_landmarks: append the face-oval and iris landmarks the embedding lacks (FLAME's
                105-point file has neither), derived from the model itself
                (:func:`flame_core.derived_landmarks.complete_mediapipe_embedding`).
            mouth_interior: append teeth, tongue and an oral cavity built from the model's lips
                (:func:`flame_core.mouth_interior.build_mouth_interior`; needs the embedding).

        Raises:
            FileNotFoundError: no model at ``path``.
            FlameFileError: the file is not a FLAME model (names the key and expected shape).
        """
        files = read_flame_files(path, landmark_embedding, derive_landmarks, mouth_interior)
        model = cls(
            files.model_dict, num_shape, num_expression, dtype, files.embedding, source=str(files.path)
        )
        if files.mouth_interior is not None:
            model.mouth_interior = files.mouth_interior
            model.num_base_faces = files.mouth_interior.num_base_faces
        model.derived_landmark_ids = files.derived_landmark_ids
        model.flame68_embedding = files.flame68_embedding
        return model

    @classmethod
    def procedural(
        cls,
        num_shape: int = 300,
        num_expression: int = 100,
        dtype: torch.dtype = torch.float32,
        mouth_interior: bool = True,
    ) -> FlameModel:
        """The open procedural head (built once per process, then cached).

        Its mesh, like FLAME's, has an opening between the inner lips; ``mouth_interior`` (default
        on) closes it with teeth, a tongue and an oral cavity, as in :meth:`from_file`.
        ``mouth_interior=False`` gives the bare FLAME-style mesh."""
        d, emb, bases, identity, interior = procedural_parts(num_shape, num_expression, bool(mouth_interior))
        model = cls(d, num_shape, num_expression, dtype, emb, "procedural", _bases=bases, _identity=identity)
        if interior is not None:
            model.mouth_interior, model.num_base_faces = interior, interior.num_base_faces
        return model

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None, **kw) -> FlameModel:
        """``path`` if given, else ``$HEADSTUDIO_FLAME_PATH``, else the procedural head (logged once).

        ``kw`` goes to :meth:`from_file` / :meth:`procedural`.
        """
        if path is not None:
            return cls.from_file(path, **kw)
        env = os.environ.get(FLAME_PATH_ENV, "").strip()
        if env:
            if not Path(env).exists():
                raise FileNotFoundError(f"{FLAME_PATH_ENV}={env!r}: no such file or directory")
            return cls.from_file(env, **kw)
        log.info("No FLAME model given (argument or %s): using the open procedural head", FLAME_PATH_ENV)
        kw.pop("landmark_embedding", None)
        return cls.procedural(**kw)

    # ------------------------------------------------------------------ properties

    @property
    def num_vertices(self) -> int:
        """``V``."""
        return int(self.v_template.shape[0] // 3)

    @property
    def num_faces(self) -> int:
        """``F``."""
        return int(self.faces.shape[0])

    @property
    def num_shape(self) -> int:
        """Shape components this model uses (``<= 300``)."""
        return self._num_shape

    @property
    def num_expression(self) -> int:
        """Expression components this model uses (``<= 100``)."""
        return self._num_expression

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the model's buffers."""
        return self.dirs.dtype

    @property
    def device(self) -> torch.device:
        """Device of the model's buffers."""
        return self.dirs.device

    def identity_hash(self) -> str:
        """sha256 hex of the model arrays (template, faces, blendshapes, regressor, weights, tree)."""
        return self._identity_hash

    def template_vertices(self) -> torch.Tensor:
        """The template mesh ``[V, 3]`` (zero shape, expression and pose)."""
        return self.v_template.view(3, -1).T

    def _apply(self, fn, recurse=True):  # keep the landmark embedding on the model's device
        out = super()._apply(fn, recurse)
        self._blend = None  # buffers changed: rebuild the oneDNN copy on next use
        if (
            self.landmark_embedding is not None
            and self.landmark_embedding.face_idx.device != self.faces.device
        ):
            self.landmark_embedding = self.landmark_embedding.to(self.faces.device)
        return out

    def __getstate__(self) -> dict:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return {**state, "_blend": None}  # rebuilt on first use (not worth storing)

    def _fast_blend(self) -> OneDnnBlend | None:
        """The oneDNN blendshape product when it applies (CPU float32, enabled, available)."""
        if not self.use_onednn or self.dirs.dtype != torch.float32 or self.dirs.device.type != "cpu":
            return None
        if self._blend is None:
            if not onednn_available():
                self.use_onednn = False
                return None
            self._blend = OneDnnBlend(self.dirs, self.v_template)
        return self._blend

    def extra_repr(self) -> str:
        return (
            f"source={self.source!r}, V={self.num_vertices}, F={self.num_faces}, "
            f"shape={self.num_shape}, expression={self.num_expression}, dtype={self.dtype}"
        )

    # ------------------------------------------------------------------ forward

    def _arg(self, name: str, x: torch.Tensor | None, width: int, B: int, exact: bool) -> torch.Tensor | None:
        if x is None:
            return None
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [B, {width}]; got {type(x).__name__}")
        bad = x.ndim != 2 or x.shape[0] != B or (x.shape[1] != width if exact else x.shape[1] > width)
        if bad:
            want = f"[{B}, {width}]" if exact else f"[{B}, <={width}]"
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {want}")
        if x.dtype != self.dtype or x.device != self.device:
            x = x.to(device=self.device, dtype=self.dtype)
        return x

    def forward(
        self,
        shape: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        neck_pose: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        eye_pose: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
    ) -> FlameOutput:
        """Posed mesh and joints. Every argument is optional (zeros); ``B`` comes from whichever is given.

        Args:
            shape: ``[B, <=num_shape]`` identity coefficients (missing trailing ones are zero).
            expression: ``[B, <=num_expression]``.
            global_orient, neck_pose, jaw_pose: ``[B, 3]`` axis-angle.
            eye_pose: ``[B, 6]`` left eye then right eye, axis-angle.
            translation: ``[B, 3]`` added to vertices and joints last.

        Returns:
            :class:`FlameOutput` with ``vertices [B, V, 3]`` and ``joints [B, 5, 3]``.
        """
        given = (shape, expression, global_orient, neck_pose, jaw_pose, eye_pose, translation)
        names = ("shape", "expression", *_POSE_ARGS, "eye_pose", "translation")
        sizes = {
            n: int(x.shape[0]) for n, x in zip(names, given) if isinstance(x, torch.Tensor) and x.ndim > 0
        }
        if len(set(sizes.values())) > 1:
            got = ", ".join(f"{n} has {b}" for n, b in sizes.items())
            raise ValueError(f"batch sizes differ ({got}); every argument needs the same B")
        B = next(iter(sizes.values()), 1)
        shape = self._arg("shape", shape, self._num_shape, B, exact=False)
        expression = self._arg("expression", expression, self._num_expression, B, exact=False)
        poses = [self._arg(n, x, 3, B, exact=True) for n, x in zip(_POSE_ARGS, given[2:5])]
        eye_pose = self._arg("eye_pose", eye_pose, 6, B, exact=True)
        translation = self._arg("translation", translation, 3, B, exact=True)

        zeros3 = None
        parts = []
        for x in (*poses, eye_pose):
            if x is None:
                if zeros3 is None:
                    zeros3 = torch.zeros(B, 3, dtype=self.dtype, device=self.device)
                parts.append(zeros3 if len(parts) < 3 else torch.cat([zeros3, zeros3], 1))
            else:
                parts.append(x)
        rotations = axis_angle_to_matrix(torch.cat(parts, 1).view(B, -1, 3))

        s = 0 if shape is None else shape.shape[1]
        e = 0 if expression is None else expression.shape[1]
        pieces = [x for x in (shape, expression) if x is not None and x.shape[1]]
        if len(pieces) == 2:
            coeffs = torch.cat(pieces, 1)
        else:
            coeffs = pieces[0] if pieces else torch.zeros(B, 0, dtype=self.dtype, device=self.device)
        full = (s, e) == (self._num_shape, self._num_expression)
        bases = LbsBases(
            self.dirs,
            self.v_template,
            self.joint_dirs,
            self.joint_template,
            self.lbs_weights_t,
            self._num_shape,
            self._num_expression,
            blend=self._fast_blend() if full else None,
        )
        verts, joints = lbs(coeffs, rotations, bases, self.parents, self._levels, s, e, translation)
        return FlameOutput(vertices=verts, joints=joints)
