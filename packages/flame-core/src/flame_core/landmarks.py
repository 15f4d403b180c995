"""Barycentric landmark embeddings: MediaPipe (105-point npz, 468-vertex map) and FLAME's 68-point."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flame_core.rotations import axis_angle_to_matrix

__all__ = ["LandmarkEmbedding", "Flame68Embedding"]


@dataclass
class LandmarkEmbedding:
    """Landmarks as barycentric points on mesh triangles.

    Attributes:
        face_idx: ``[L]`` long, triangle of each landmark.
        bary_coords: ``[L, 3]`` float barycentric weights (rows sum to 1).
        landmark_indices: ``[L]`` long, which MediaPipe landmark (0..477) each row is.
    """

    face_idx: torch.Tensor
    bary_coords: torch.Tensor
    landmark_indices: torch.Tensor

    def __post_init__(self) -> None:
        self.face_idx = torch.as_tensor(self.face_idx, dtype=torch.long).reshape(-1)
        self.bary_coords = torch.as_tensor(self.bary_coords, dtype=torch.float32).reshape(-1, 3)
        self.landmark_indices = torch.as_tensor(self.landmark_indices, dtype=torch.long).reshape(-1)
        n = self.face_idx.shape[0]
        if self.bary_coords.shape[0] != n or self.landmark_indices.shape[0] != n:
            raise ValueError(
                f"LandmarkEmbedding: face_idx has {n} rows, bary_coords {self.bary_coords.shape[0]}, "
                f"landmark_indices {self.landmark_indices.shape[0]}; they must match"
            )

    def __len__(self) -> int:
        return int(self.face_idx.shape[0])

    @classmethod
    def from_vertex_ids(cls, vertex_ids: np.ndarray, faces: np.ndarray) -> LandmarkEmbedding:
        """One-hot embedding of mesh vertices ``[L]`` (landmark i = vertex_ids[i]) on ``faces [F,3]``."""
        vertex_ids = np.asarray(vertex_ids, np.int64).reshape(-1)
        faces = np.asarray(faces, np.int64)
        first = np.full(int(faces.max()) + 1, -1, np.int64)
        corner = np.zeros_like(first)
        for c in (2, 1, 0):
            first[faces[:, c]] = np.arange(len(faces))
            corner[faces[:, c]] = c
        if (vertex_ids < 0).any() or (vertex_ids >= len(first)).any() or (first[vertex_ids] < 0).any():
            raise ValueError("vertex index map has ids that are not vertices of any face")
        bary = np.zeros((len(vertex_ids), 3))
        bary[np.arange(len(vertex_ids)), corner[vertex_ids]] = 1.0
        return cls(first[vertex_ids], bary, np.arange(len(vertex_ids)))

    @classmethod
    def load(cls, path: str | os.PathLike, faces: np.ndarray | None = None) -> LandmarkEmbedding:
        """Read the 105-point npz (``lmk_face_idx``, ``lmk_b_coords``, ``landmark_indices``),
        our ``(face_idx, bary_coords, landmark_indices)`` npz, or a 468-vertex index map
        (``.npy`` / npz with one int array of vertex ids, row ``i`` = MediaPipe landmark ``i``, or
        with ``landmark_indices`` beside it naming each row's landmark; needs ``faces``)."""
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
            arrays = (
                {"vertex_ids": data} if isinstance(data, np.ndarray) else {k: data[k] for k in data.files}
            )
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # a corrupt zip: BadZipFile
            raise ValueError(f"{path}: not a landmark embedding (.npz/.npy): {e}") from e
        if "lmk_face_idx" in arrays:
            for k in ("lmk_b_coords", "landmark_indices"):
                if k not in arrays:
                    raise ValueError(f"{path}: 105-point embedding lacks key {k!r}")
            return cls(arrays["lmk_face_idx"], arrays["lmk_b_coords"], arrays["landmark_indices"])
        if "face_idx" in arrays and "bary_coords" in arrays:
            li = arrays.get("landmark_indices", np.arange(len(arrays["face_idx"])))
            return cls(arrays["face_idx"], arrays["bary_coords"], li)
        # a vertex index map: one int array of vertex ids (row i = MediaPipe landmark i), or that
        # array plus ``landmark_indices`` naming the MediaPipe landmark of each row
        li = arrays.get("landmark_indices")
        ints = [
            v
            for k, v in arrays.items()
            if np.issubdtype(v.dtype, np.integer) and v.ndim == 1 and k != "landmark_indices"
        ]
        if len(ints) == 1:
            if faces is None:
                raise ValueError(f"{path}: a vertex index map needs the mesh faces: load(path, faces=...)")
            try:
                emb = cls.from_vertex_ids(ints[0], faces)
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from e
            if li is not None:
                li = np.asarray(li).reshape(-1)
                if li.shape != ints[0].shape:
                    raise ValueError(
                        f"{path}: landmark_indices has {li.shape[0]} entries; expected one per vertex id "
                        f"({ints[0].shape[0]})"
                    )
                emb.landmark_indices = torch.as_tensor(li, dtype=torch.long)
            return emb
        raise ValueError(
            f"{path}: unknown landmark file; expected keys lmk_face_idx/lmk_b_coords/landmark_indices, "
            f"face_idx/bary_coords, or one int array of vertex ids; found {sorted(arrays)}"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the 105-point npz format (works for any L)."""
        np.savez(
            path,
            lmk_face_idx=self.face_idx.cpu().numpy().astype(np.int64),
            lmk_b_coords=self.bary_coords.cpu().numpy().astype(np.float64),
            landmark_indices=self.landmark_indices.cpu().numpy().astype(np.int64),
        )

    def to(self, device: torch.device | str) -> LandmarkEmbedding:
        """Copy to ``device``."""
        return LandmarkEmbedding(
            self.face_idx.to(device), self.bary_coords.to(device), self.landmark_indices.to(device)
        )

    def select(self, mediapipe_ids: list[int] | np.ndarray | torch.Tensor) -> LandmarkEmbedding:
        """Rows for the given MediaPipe ids, in that order; error naming ids that are absent."""
        ids = torch.as_tensor(np.asarray(mediapipe_ids), dtype=torch.long).reshape(-1)
        lut = {int(m): i for i, m in enumerate(self.landmark_indices.tolist())}
        missing = [int(i) for i in ids if int(i) not in lut]
        if missing:
            raise KeyError(f"MediaPipe landmark ids not in this embedding: {missing[:10]}")
        rows = torch.tensor([lut[int(i)] for i in ids], dtype=torch.long)
        return LandmarkEmbedding(self.face_idx[rows], self.bary_coords[rows], self.landmark_indices[rows])

    def __call__(self, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Landmark positions ``[B, L, 3]`` from ``vertices [B, V, 3]`` and ``faces [F, 3]``."""
        faces = torch.as_tensor(faces, device=vertices.device).long()
        tri = faces[self.face_idx.to(vertices.device)]  # [L,3]
        corners = vertices[:, tri]  # [B,L,3,3]
        w = self.bary_coords.to(vertices)
        return (corners * w[None, :, :, None]).sum(2)


class Flame68Embedding:
    """FLAME's 68-point embedding: a 17-point face contour chosen by head yaw + 51 static points.

    Reads ``flame_static_embedding.pkl`` (``lmk_face_idx [51]``, ``lmk_b_coords [51,3]``) and
    ``flame_dynamic_embedding.npy`` (dict with ``lmk_face_idx [79,17]``, ``lmk_b_coords [79,17,3]``),
    the files FLAME's release ships beside the model. Output rows follow the iBUG-68 order: the
    contour (0..16) first, then the static points (17..67).

    The dynamic table's rows are indexed as in FLAME's reference code (``smplx``'s
    ``find_dynamic_lmk_idx_and_bcoords``): with ``d = round(yaw in degrees)`` clamped to
    ``[-39, 39]``, row ``-d`` for ``d <= 0`` (rows 0..39) and row ``39 + d`` for ``d > 0``
    (rows 40..78). ``yaw`` is the y Euler angle of the head rotation (root composed with neck):
    :meth:`yaw_from_pose`.
    """

    STATIC_FILE = "flame_static_embedding.pkl"
    DYNAMIC_FILE = "flame_dynamic_embedding.npy"

    def __init__(self, static_path: str | os.PathLike, dynamic_path: str | os.PathLike) -> None:
        try:
            with open(static_path, "rb") as fh:
                st = pickle.load(fh, encoding="latin1")
            st_face = np.asarray(st["lmk_face_idx"], np.int64)
            st_bary = np.asarray(st["lmk_b_coords"], np.float64)
        except (OSError, pickle.UnpicklingError, KeyError, TypeError, IndexError, ValueError, EOFError) as e:
            raise ValueError(
                f"{static_path}: not a FLAME static embedding (lmk_face_idx, lmk_b_coords): {e}"
            ) from e
        try:
            dyn = np.load(dynamic_path, allow_pickle=True, encoding="latin1")[()]
            dy_face = np.asarray(dyn["lmk_face_idx"], np.int64)
            dy_bary = np.asarray(dyn["lmk_b_coords"], np.float64)
        except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError) as e:
            raise ValueError(f"{dynamic_path}: not a FLAME dynamic embedding: {e}") from e
        if st_face.ndim != 1 or st_bary.shape != (len(st_face), 3):
            raise ValueError(
                f"{static_path}: lmk_face_idx/lmk_b_coords have shapes {st_face.shape}/{st_bary.shape}; "
                "expected [51] and [51, 3]"
            )
        if dy_face.shape != (79, 17) or dy_bary.shape != (79, 17, 3):
            raise ValueError(
                f"{dynamic_path}: lmk_face_idx/lmk_b_coords have shapes {dy_face.shape}/{dy_bary.shape}; "
                "expected [79, 17] and [79, 17, 3] (yaw -39..39 degrees)"
            )
        self.static = LandmarkEmbedding(st_face, st_bary, np.arange(17, 17 + len(st_face)))
        self.dyn_face = torch.as_tensor(dy_face)
        self.dyn_bary = torch.as_tensor(dy_bary, dtype=torch.float32)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> Flame68Embedding | None:
        """The embedding in a FLAME folder when both of its files are there, else ``None``.

        Raises:
            ValueError: a file is malformed (the message names it).
        """
        folder = Path(folder)
        st, dy = folder / cls.STATIC_FILE, folder / cls.DYNAMIC_FILE
        if not (st.is_file() and dy.is_file()):
            return None
        return cls(st, dy)

    @staticmethod
    def yaw_from_pose(global_orient: torch.Tensor, neck_pose: torch.Tensor) -> torch.Tensor:
        """Head yaw ``[B]`` (radians) of ``R(global_orient) @ R(neck_pose)`` (both ``[B, 3]`` axis-angle).

        The y Euler angle ``atan2(-R[2,0], hypot(R[0,0], R[1,0]))``, as FLAME's reference code.
        """
        for name, x in (("global_orient", global_orient), ("neck_pose", neck_pose)):
            if x.ndim != 2 or x.shape[1] != 3:
                raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [B, 3]")
        R = axis_angle_to_matrix(global_orient) @ axis_angle_to_matrix(neck_pose)
        return torch.atan2(-R[:, 2, 0], torch.sqrt(R[:, 0, 0] ** 2 + R[:, 1, 0] ** 2))

    def contour_rows(self, yaw: torch.Tensor) -> torch.Tensor:
        """Row of the dynamic table ``[B]`` long for head yaw ``[B]`` in radians (see the class doc)."""
        # FLAME's own discontinuity: a yaw of exactly k + 0.5 degrees (only ever constructed on
        # purpose) picks either neighbouring row, 1 degree apart, depending on rounding.
        deg = torch.round(torch.rad2deg(yaw.detach().reshape(-1))).clamp(-39, 39).long()
        return torch.where(deg <= 0, -deg, 39 + deg).cpu()

    def __call__(self, vertices: torch.Tensor, faces: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
        """68 landmarks ``[B, 68, 3]``; ``yaw [B]`` in radians (:meth:`yaw_from_pose`) picks the contour."""
        if yaw.reshape(-1).shape[0] != vertices.shape[0]:
            raise ValueError(f"yaw has {yaw.numel()} values; expected one per pose (B={vertices.shape[0]})")
        idx = self.contour_rows(yaw)
        faces = torch.as_tensor(faces, device=vertices.device).long()
        tri = faces[self.dyn_face[idx].to(vertices.device)]  # [B,17,3]
        corners = torch.gather(
            vertices[:, None].expand(-1, 17, -1, -1), 2, tri[..., None].expand(-1, -1, -1, 3)
        )  # [B,17,3,3]
        contour = (corners * self.dyn_bary[idx].to(vertices)[..., None]).sum(2)
        return torch.cat([contour, self.static(vertices, faces)], 1)
