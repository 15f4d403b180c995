"""What a :class:`flame_core.FlameModel` is built from: a FLAME file with the files beside it, or the
procedural head.

- :func:`read_flame_files`: the model pickle (a file, or a folder holding one of
  :data:`FLAME_FILE_NAMES`), its MediaPipe landmark embedding (completed with the face oval and
  irises derived from the model), FLAME's 68-point embedding, and the mouth interior when asked.
- :func:`procedural_parts`: the procedural head's arrays, embedding and LBS bases, built once per
  process.
- :func:`split_shapedirs`, :func:`bases_from_dict`, :func:`hash_arrays`: how the arrays of either
  become the model's blendshape bases and its identity hash.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flame_core.derived_landmarks import complete_mediapipe_embedding
from flame_core.io import FlameFileError, load_flame_pickle
from flame_core.landmarks import Flame68Embedding, LandmarkEmbedding
from flame_core.lbs import LbsBases, build_bases
from flame_core.mouth_interior import MouthInterior, append_mouth_interior, build_mouth_interior

__all__ = [
    "EMBEDDING_FILE",
    "FLAME_FILE_NAMES",
    "FlameFiles",
    "bases_from_dict",
    "hash_arrays",
    "procedural_parts",
    "read_flame_files",
    "split_shapedirs",
]

#: File names tried, in order, when a directory is given instead of a pickle.
FLAME_FILE_NAMES = ("flame2023.pkl", "flame2023_no_jaw.pkl", "generic_model.pkl", "FLAME_NEUTRAL.pkl")
#: The MediaPipe landmark embedding read from beside the model when none is given.
EMBEDDING_FILE = "mediapipe_landmark_embedding.npz"


def split_shapedirs(num_components: int) -> tuple[int, int]:
    """How a file's ``shapedirs [V, 3, L]`` splits into ``(shape, expression)`` components.

    FLAME 2020/2023: ``L = 400`` -> ``(300, 100)``; ``300 < L < 400`` -> ``(300, L - 300)``;
    reduced models with ``L <= 300`` hold equal halves (smplx's 10 + 10 convention).
    """
    if num_components > 300:
        if num_components > 400:
            raise ValueError(f"shapedirs has {num_components} components; FLAME has at most 300 + 100")
        return 300, num_components - 300
    if num_components % 2:
        raise ValueError(
            f"shapedirs has {num_components} components; expected 300 + E or an even S + E split"
        )
    return num_components // 2, num_components // 2


def bases_from_dict(d: dict[str, np.ndarray], num_shape: int, num_expression: int) -> LbsBases:
    """The LBS bases of the model arrays ``d`` keeping the first ``num_shape`` shape and
    ``num_expression`` expression components (at most what ``d`` holds)."""
    S, E = split_shapedirs(d["shapedirs"].shape[-1])
    sd = d["shapedirs"]
    return build_bases(
        d["v_template"],
        sd[..., : min(num_shape, S)],
        sd[..., S : S + min(num_expression, E)],
        d["posedirs"],
        d["J_regressor"],
        d["weights"],
    )


def hash_arrays(d: dict[str, np.ndarray]) -> str:
    """sha256 hex of the model arrays (template, faces, blendshapes, regressor, weights, tree),
    independent of their in-memory dtype width and byte order."""
    h = hashlib.sha256()
    for key in ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table"):
        a = np.ascontiguousarray(d[key], dtype="<i8" if d[key].dtype.kind in "iu" else "<f8")
        h.update(key.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def procedural_parts(
    num_shape: int, num_expression: int, mouth_interior: bool = False
) -> tuple[dict, LandmarkEmbedding, LbsBases, str, MouthInterior | None]:
    """The procedural head's ``(arrays, landmark embedding, LBS bases, identity hash, mouth
    interior or None)``, built once per process for each argument triple."""
    from flame_core.procedural import build_procedural_head

    head = build_procedural_head()
    d = head.model_dict
    interior = None
    if mouth_interior:
        interior = build_mouth_interior(d, head.embedding)
        d = append_mouth_interior(d, interior)
    return d, head.embedding, bases_from_dict(d, num_shape, num_expression), hash_arrays(d), interior


@dataclass
class FlameFiles:
    """A FLAME model read from its files (:func:`read_flame_files`).

    Attributes:
        path: the model pickle read.
        model_dict: its arrays (with the mouth interior appended when asked).
        embedding: the MediaPipe landmark embedding, or ``None``.
        mouth_interior: the appended teeth, tongue and cavity, or ``None``.
        derived_landmark_ids: MediaPipe ids derived from the model rather than read from a file.
        flame68_embedding: FLAME's 68-point embedding from the model's folder, or ``None``.
    """

    path: Path
    model_dict: dict[str, np.ndarray]
    embedding: LandmarkEmbedding | None = None
    mouth_interior: MouthInterior | None = None
    derived_landmark_ids: frozenset[int] = field(default_factory=frozenset)
    flame68_embedding: Flame68Embedding | None = None


def _find_model_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        found = [p / n for n in FLAME_FILE_NAMES if (p / n).is_file()]
        if not found:
            raise FileNotFoundError(
                f"{p}: directory holds no FLAME model (looked for {', '.join(FLAME_FILE_NAMES)})"
            )
        p = found[0]
    return p


def read_flame_files(
    path: str | os.PathLike,
    landmark_embedding: LandmarkEmbedding | str | os.PathLike | None = None,
    derive_landmarks: bool = True,
    mouth_interior: bool = False,
) -> FlameFiles:
    """Read a FLAME model and the files beside it (the arguments of
    :meth:`flame_core.FlameModel.from_file`, which documents them).

    Raises:
        FileNotFoundError: no model at ``path``.
        FlameFileError: the file is not a FLAME model, or an embedding refers to faces the mesh
            does not have, or the mouth interior has no embedding to be built from.
    """
    p = _find_model_file(path)
    d = load_flame_pickle(p)
    emb = landmark_embedding
    if emb is None and (p.parent / EMBEDDING_FILE).is_file():
        emb = p.parent / EMBEDDING_FILE
    if emb is not None and not isinstance(emb, LandmarkEmbedding):
        emb = LandmarkEmbedding.load(emb, faces=d["f"])
    if emb is not None and len(emb) and int(emb.face_idx.max()) >= len(d["f"]):
        raise FlameFileError(
            f"{p}: landmark embedding refers to face {int(emb.face_idx.max())}; "
            f"the mesh has {len(d['f'])} faces"
        )
    derived: frozenset[int] = frozenset()
    if emb is not None and derive_landmarks:
        measured = set(emb.landmark_indices.tolist())
        emb = complete_mediapipe_embedding(d, emb, source=str(p))
        derived = frozenset(set(emb.landmark_indices.tolist()) - measured)
    interior = None
    if mouth_interior:
        if emb is None:
            raise FlameFileError(
                f"{p}: the mouth interior needs the model's MediaPipe landmark embedding "
                f"({EMBEDDING_FILE} beside the model, or landmark_embedding=...)"
            )
        try:
            interior = build_mouth_interior(d, emb)
        except ValueError as err:
            raise FlameFileError(f"{p}: {err}") from err
        d = append_mouth_interior(d, interior)
    flame68 = Flame68Embedding.from_folder(p.parent)
    if flame68 is not None:
        faces = flame68.dyn_face.max(), flame68.static.face_idx.max()
        if int(max(faces)) >= len(d["f"]):
            raise FlameFileError(
                f"{p.parent}: the 68-point embedding (flame_*_embedding) refers to face "
                f"{int(max(faces))}; the mesh has {len(d['f'])} faces"
            )
    return FlameFiles(p, d, emb, interior, derived, flame68)
