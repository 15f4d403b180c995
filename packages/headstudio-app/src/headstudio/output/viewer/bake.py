"""What an exported folder carries instead of a server: baked motion and, optionally, the head model.

* :func:`bake_motion` evaluates the head over a whole motion and quantises the vertices to 16
  bits per coordinate (``v = lo + q * scale`` per axis; the step is the motion's bounding box
  over 65535, a few micrometres for a head).
* :func:`head_model_arrays` extracts what the page's head model (``web/src/head.js``) needs to
  pose the avatar's head from sliders: the shaped rest mesh and joints, the slider expression
  components, one row per preset, the skinning weights and the pose correctives (only when
  non-zero), read from ``flame_core.FlameModel``'s bases (``flame_core.lbs.LbsBases`` layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flame_core import MotionSequence
from tqdm.auto import tqdm

from ...avatar import Avatar
from ...head_motion import fit_flame_params

__all__ = ["QUANT_LEVELS", "bake_motion", "head_model_arrays"]

QUANT_LEVELS = 65535


def bake_motion(
    avatar: Avatar, motion: MotionSequence, batch_size: int = 16, progress: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Posed vertices of every frame, quantised to uint16.

    Args:
        avatar: the ``Avatar`` (its head and shape pose the mesh).
        motion: a ``flame_core.MotionSequence``.
        batch_size: frames per head evaluation.
        progress: show a tqdm bar.

    Returns:
        ``(arrays, spec)``: ``frames [T, V, 3]`` uint16, ``lo [3]``, ``scale [3]`` float32, and
        ``{"frames": T, "fps": fps}``.
    """
    num_expr = int(avatar.head.num_expression)
    dev = avatar.means.device
    chunks = []
    T = len(motion)
    with torch.no_grad(), tqdm(total=T, desc="bake motion", unit="frame", disable=not progress) as bar:
        for start in range(0, T, batch_size):
            idx = list(range(start, min(start + batch_size, T)))
            params = fit_flame_params(motion.params(idx), num_expr).to(dev)
            chunks.append(avatar.pose(params).float().cpu().numpy())
            bar.update(len(idx))
    verts = np.concatenate(chunks, 0)  # [T, V, 3]
    lo = verts.reshape(-1, 3).min(0)
    span = np.maximum(verts.reshape(-1, 3).max(0) - lo, 1e-9)
    scale = (span / QUANT_LEVELS).astype(np.float32)
    q = np.clip(np.rint((verts - lo) / scale), 0, QUANT_LEVELS).astype(np.uint16)
    arrays = {"frames": q, "lo": lo.astype(np.float32), "scale": scale}
    return arrays, {"frames": int(T), "fps": float(motion.fps)}


def _rows(dirs: torch.Tensor, V: int) -> np.ndarray:
    """Coordinate-major basis rows ``[R, 3*V]`` → ``[R, V, 3]`` float32."""
    return dirs.reshape(dirs.shape[0], 3, V).transpose(1, 2).detach().float().cpu().numpy()


def head_model_arrays(
    avatar: Avatar, presets: Mapping[str, Mapping[str, torch.Tensor]], num_sliders: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The head model of ``web/src/head.js`` for this avatar.

    Rows of ``basis [R, V, 3]`` / ``j_basis [R, J, 3]``: the first ``num_sliders`` expression
    components, then per preset its expression beyond the sliders (``preset:<name>``, weight 1
    while that preset is selected).

    Returns:
        ``(arrays, spec)``: ``v_rest [V,3]``, ``basis``, ``j_rest [J,3]``, ``j_basis``,
        ``weights [V,J]`` and, for heads with pose correctives, ``posedirs [(J-1)*9, V, 3]``;
        ``spec = {"rows": [...], "parents": [...]}``.
    """
    head = avatar.head
    S, E, V = int(head.num_shape), int(head.num_expression), int(head.num_vertices)
    J = len(head.parents)
    dirs = head.dirs.detach().float().cpu()
    jdirs = head.joint_dirs.detach().float().cpu()
    shape = avatar.shape.detach().float().cpu().reshape(1, -1)[:, :S]
    beta = torch.zeros(1, S)
    beta[:, : shape.shape[1]] = shape
    v_rest = head.v_template.detach().float().cpu() + beta @ dirs[:S]
    j_rest = head.joint_template.detach().float().cpu() + beta @ jdirs[:S]
    K = min(num_sliders, E)
    rows = [f"expression {k}" for k in range(K)]
    basis = [dirs[S : S + K]]
    j_basis = [jdirs[S : S + K]]
    for name, p in presets.items():
        rest = p["expression"].reshape(1, -1).float().cpu()[:, K:E]
        basis.append(rest @ dirs[S + K : S + K + rest.shape[1]])
        j_basis.append(rest @ jdirs[S + K : S + K + rest.shape[1]])
        rows.append(f"preset:{name}")
    arrays = {
        "v_rest": _rows(v_rest, V)[0],
        "basis": _rows(torch.cat(basis, 0), V),
        "j_rest": j_rest.reshape(J, 3).numpy(),
        "j_basis": torch.cat(j_basis, 0).reshape(-1, J, 3).numpy(),
        "weights": head.lbs_weights_t.detach().float().cpu().T.contiguous().numpy(),
    }
    pose = dirs[S + E :]
    if pose.shape[0] and bool(pose.abs().max() > 0):
        arrays["posedirs"] = _rows(pose, V)
    return arrays, {"rows": rows, "parents": [int(p) for p in head.parents]}
