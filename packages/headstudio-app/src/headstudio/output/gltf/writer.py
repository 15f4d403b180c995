"""``export_glb``: the avatar as one glTF 2.0 binary, for engines and DCC tools.

What goes in (``parts``):

* ``splats``: the Gaussians at the neutral pose as a KHR_gaussian_splatting primitive
  (:mod:`.splats`).
* ``mesh``: the head's triangles at the avatar's shape with a colour texture baked from the
  Gaussians into an xatlas UV atlas, a skin over the head's joints (``neck``, ``head``, ``jaw``,
  ``eye_L``, ``eye_R``) with its linear-blend weights, and 52 morph targets named exactly as
  ARKit's blendshapes (the head's fitted ARKit basis, :mod:`headstudio.animate.arkit`), listed in
  ``mesh.extras.targetNames`` (three.js and Blender read the names there).
* ``both`` (default).

With ``motion`` (a FLAME ``MotionSequence``, a motion file, or ``ArkitCurves``) the file also
holds one animation at the motion's frame rate (:mod:`.animation`); a FLAME motion adds one morph
target per expression component it uses (``flameExpression00``...) so its expressions are
reproduced exactly (the ARKit targets stay at 0 in that clip).

Writing is atomic (:func:`headstudio._atomic.atomic_output`): the GLB goes to
``.NAME.partial-PID-XXXX.glb`` beside the target and is renamed over it when complete, so a killed
export leaves the previous file; partial files whose writer process is gone (an earlier kill) are
swept on the next export to the same name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from flame_core import FlameParams
from flame_core.motion import MotionSequence

from ..._atomic import atomic_output
from ...animate.arkit import ARKIT_NAMES, ArkitBasis, ArkitCurves, basis_for, euler_to_axis_angle
from ...avatar import Avatar
from ...errors import HeadStudioError
from ...head_motion import as_motion
from .animation import axis_angle_to_quat_xyzw, flame_tracks
from .builder import ELEMENT_ARRAY_BUFFER, GltfBuilder
from .mesh import JOINT_NAMES, HeadMesh, bake_texture, head_mesh, morph_deltas, texture_png
from .splats import add_splats

__all__ = ["export_glb", "GlbSummary", "PARTS", "EXPRESSION_TARGET"]

log = logging.getLogger(__name__)

PARTS = ("splats", "mesh", "both")
#: Name pattern of the per-component expression morph targets a FLAME motion adds.
EXPRESSION_TARGET = "flameExpression{:02d}"
Parts = Literal["splats", "mesh", "both"]


class GlbSummary(dict):
    """What :func:`export_glb` wrote: ``path``, ``num_gaussians``, ``num_vertices``,
    ``num_targets``, ``num_frames``, ``dropped_weight``."""


def _col_major(m: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(m.transpose(0, 2, 1)).reshape(len(m), 16).astype(np.float32)


def _as_motion(motion: object, num_expression: int) -> MotionSequence | ArkitCurves | None:
    if motion is None or isinstance(motion, (MotionSequence, ArkitCurves)):
        m = motion
    else:
        m = as_motion(motion)  # a motion file
    if isinstance(m, MotionSequence) and m.expression.shape[1] > num_expression:
        raise HeadStudioError(
            f"the motion has {m.expression.shape[1]} expression parameters but this head has "
            f"{num_expression}; retarget it to this head (flame_core.retarget.retarget_motion) "
            "or use a motion made for it."
        )
    return m


def _add_mesh(
    b: GltfBuilder,
    avatar: Avatar,
    mesh: HeadMesh,
    basis: ArkitBasis,
    expr_components: list[int],
    texture_size: int,
) -> tuple[int, list[int], int]:
    """Mesh, material, skin and joint nodes; returns ``(mesh node, joint nodes, skinned root node)``."""
    K = len(ARKIT_NAMES)
    deltas = [morph_deltas(avatar, basis.params(np.eye(K)).to(avatar.means.device), mesh.vmap)]
    names = list(ARKIT_NAMES)
    if expr_components:
        E = int(avatar.head.num_expression)
        unit = torch.zeros(len(expr_components), E, device=avatar.means.device)
        unit[torch.arange(len(expr_components)), torch.as_tensor(expr_components)] = 1.0
        deltas.append(morph_deltas(avatar, FlameParams(expression=unit), mesh.vmap))
        names += [EXPRESSION_TARGET.format(i) for i in expr_components]
    all_deltas = np.concatenate(deltas, 0)
    tex = bake_texture(avatar, mesh, texture_size)
    image = b.add_png(texture_png(tex), "baked_color")
    sampler = b.add("samplers", {"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071})
    texture = b.add("textures", {"source": image, "sampler": sampler})
    material = b.add("materials", {
        "name": "baked_gaussians",
        "pbrMetallicRoughness": {
            "baseColorTexture": {"index": texture}, "metallicFactor": 0.0, "roughnessFactor": 0.9,
        },
        "doubleSided": True,
    })  # fmt: skip
    attrs = {
        "POSITION": b.add_accessor(mesh.positions, min_max=True),
        "NORMAL": b.add_accessor(mesh.normals),
        "TEXCOORD_0": b.add_accessor(mesh.uvs),
        "JOINTS_0": b.add_accessor(mesh.joints),
        "WEIGHTS_0": b.add_accessor(mesh.weights),
    }
    targets = [{"POSITION": b.add_accessor(d, min_max=True)} for d in all_deltas]
    prim = {
        "attributes": attrs,
        "indices": b.add_accessor(mesh.indices.reshape(-1), target=ELEMENT_ARRAY_BUFFER),
        "material": material,
        "mode": 4,
        "targets": targets,
    }
    gl_mesh = b.add("meshes", {
        "name": "head", "primitives": [prim], "weights": [0.0] * len(names), "extras": {"targetNames": names},
    })  # fmt: skip
    # joints: local translation = offset from the parent joint (FLAME's rest frames are unrotated)
    J = mesh.joint_positions.astype(np.float64)
    joint_nodes = []
    for j, name in enumerate(JOINT_NAMES[: len(J)]):
        p = mesh.parents[j]
        t = J[j] - (J[p] if p >= 0 else 0.0)
        joint_nodes.append(b.add("nodes", {"name": name, "translation": [float(x) for x in t]}))
    for j, p in enumerate(mesh.parents):
        if p >= 0:
            b.doc["nodes"][joint_nodes[p]].setdefault("children", []).append(joint_nodes[j])
    ibm = np.tile(np.eye(4), (len(J), 1, 1))
    ibm[:, :3, 3] = -J
    skin = b.add("skins", {
        "name": "head_rig", "joints": joint_nodes, "skeleton": joint_nodes[0],
        "inverseBindMatrices": b.add_accessor(_col_major(ibm), target=None, mat4=True),
    })  # fmt: skip
    mesh_node = b.add("nodes", {"name": "head", "mesh": gl_mesh, "skin": skin})
    root = b.add("nodes", {"name": "head_rig", "children": [joint_nodes[0]]})
    return mesh_node, joint_nodes, root


def _add_animation(
    b: GltfBuilder,
    motion: MotionSequence | ArkitCurves,
    mesh: HeadMesh,
    mesh_node: int,
    joint_nodes: list[int],
    expr_components: list[int],
    name: str,
) -> int:
    T = len(motion)
    fps = float(motion.fps)
    times = b.add_accessor((np.arange(T) / fps).astype(np.float32), target=None, min_max=True)
    samplers: list[dict] = []
    channels: list[dict] = []

    def channel(node: int, path: str, values: np.ndarray) -> None:
        out = b.add_accessor(np.ascontiguousarray(values, dtype=np.float32), target=None)
        samplers.append({"input": times, "output": out, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path}})

    n_targets = len(ARKIT_NAMES) + len(expr_components)
    weights = np.zeros((T, n_targets), np.float32)
    if isinstance(motion, ArkitCurves):
        weights[:, : len(ARKIT_NAMES)] = motion.weights
        hr = motion.head_rotation.astype(np.float64)
        channel(
            joint_nodes[1],
            "rotation",
            axis_angle_to_quat_xyzw(euler_to_axis_angle(hr[:, 0], hr[:, 1], hr[:, 2])),
        )
    else:
        tracks = flame_tracks(motion, T)
        for j, node in enumerate(joint_nodes):
            channel(node, "rotation", axis_angle_to_quat_xyzw(tracks[str(j)]))
        tr = tracks["translation"]
        if np.abs(tr).max() > 0:
            channel(joint_nodes[0], "translation", mesh.joint_positions[0][None].astype(np.float64) + tr)
        expr = motion.expression.detach().cpu().numpy()
        for k, i in enumerate(expr_components):
            weights[:, len(ARKIT_NAMES) + k] = expr[:, i]
    channel(mesh_node, "weights", weights.reshape(-1))
    return b.add("animations", {"name": name, "samplers": samplers, "channels": channels})


def export_glb(
    avatar: Avatar,
    path: str | Path,
    parts: Parts = "both",
    motion: MotionSequence | ArkitCurves | str | Path | None = None,
    texture_size: int = 1024,
    basis: ArkitBasis | None = None,
    animation_name: str = "motion",
) -> GlbSummary:
    """Write the avatar as a ``.glb`` (module docstring).

    Args:
        avatar: the ``Avatar``.
        path: the ``.glb`` to write (atomically).
        parts: ``splats``, ``mesh`` or ``both``.
        motion: a FLAME ``MotionSequence`` / motion file, or ``ArkitCurves``; needs the mesh.
        texture_size: the baked texture's side in pixels.
        basis: the ARKit fit (default: the avatar's stored one, fitted and stored if missing).
        animation_name: the clip's name.

    Raises:
        HeadStudioError: a wrong suffix or part, a motion without the mesh, a motion with more
            expression parameters than the head.
    """
    out = Path(path)
    if out.suffix.lower() != ".glb":
        raise HeadStudioError(f"output '{out}' must end in .glb.")
    if parts not in PARTS:
        raise HeadStudioError(f"«parts» must be one of {', '.join(PARTS)}; got '{parts}'.")
    if out.is_dir():
        raise HeadStudioError(f"output '{out}' is a folder; give a .glb file name.")
    want_mesh, want_splats = parts in ("mesh", "both"), parts in ("splats", "both")
    E = int(avatar.head.num_expression)
    m = _as_motion(motion, E)
    if m is not None and not want_mesh:
        raise HeadStudioError("a motion animates the mesh; use «parts» mesh or both with «motion».")
    b = GltfBuilder()
    scene_nodes: list[int] = []
    summary = GlbSummary(
        path=out, num_gaussians=0, num_vertices=0, num_targets=0, num_frames=0, dropped_weight=0.0
    )
    if want_splats:
        scene_nodes.append(add_splats(b, avatar))
        summary["num_gaussians"] = avatar.num_gaussians
    if want_mesh:
        basis = basis or basis_for(avatar)
        if basis.expression.shape[1] != E:
            raise HeadStudioError(
                f"the ARKit fit has {basis.expression.shape[1]} expression parameters but this head has {E}; "
                "refit it on this head (basis_for(avatar, refit=True))."
            )
        mesh = head_mesh(avatar)
        expr_components: list[int] = []
        if isinstance(m, MotionSequence):
            used = np.abs(m.expression.detach().cpu().numpy()).max(0) > 1e-7
            expr_components = [int(i) for i in np.flatnonzero(used)]
        mesh_node, joint_nodes, root = _add_mesh(b, avatar, mesh, basis, expr_components, texture_size)
        scene_nodes += [root, mesh_node]
        if m is not None:
            _add_animation(b, m, mesh, mesh_node, joint_nodes, expr_components, animation_name)
            summary["num_frames"] = len(m)
        summary.update(num_vertices=len(mesh.positions), num_targets=len(ARKIT_NAMES) + len(expr_components),
                       dropped_weight=mesh.dropped_weight)  # fmt: skip
    b.doc["scene"] = 0
    b.doc["scenes"] = [{"name": "avatar", "nodes": scene_nodes}]
    source = "procedural" if str(avatar.head.source) == "procedural" else "flame"  # never a local path
    b.doc["asset"]["extras"] = {"headstudio": {"head": source, "parts": parts}}
    data = b.glb_bytes()
    with atomic_output(out) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    log.info("exported %s (%d bytes)", out, len(data))
    return summary
