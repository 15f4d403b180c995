"""Fixtures of the engine-export tests: the teacher avatar on the procedural head with its ARKit
fit (fitted once per session), exported GLBs, and where the real clients live."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from flame_core import FlameModel

CLIENTS = Path(__file__).resolve().parents[1] / "gltf_clients"
TEXTURE = 256  # small baked textures keep the tests fast


def node_modules() -> Path:
    """The clients' ``node_modules`` (``HEADSTUDIO_GLTF_CLIENTS`` overrides); skips when absent."""
    nm = Path(os.environ.get("HEADSTUDIO_GLTF_CLIENTS") or CLIENTS / "node_modules")
    if shutil.which("node") is None:
        pytest.skip("node is not installed (apt-get install -y nodejs npm, as .ci/run does)")
    if not (nm / "gltf-validator").is_dir():
        pytest.skip(
            f"the glTF clients are not installed in {nm}; run `npm ci --prefix {CLIENTS}` (as .ci/run does)"
        )
    return nm


@pytest.fixture(scope="session")
def head() -> FlameModel:
    return FlameModel.procedural()


@pytest.fixture(scope="session")
def basis(head: FlameModel) -> Any:
    from headstudio.animate.arkit import fit_arkit_basis

    return fit_arkit_basis(head)


@pytest.fixture(scope="session")
def teacher(head: FlameModel, basis: Any) -> Any:
    from headstudio.animate.arkit import store_basis
    from headstudio.demo.teacher import build_teacher_avatar

    av = build_teacher_avatar(head)
    store_basis(av, basis)
    return av


@pytest.fixture(scope="session")
def talk_motion() -> Any:
    from flame_core.motion import procedural_talking_motion

    return procedural_talking_motion(num_frames=20, fps=25.0, num_expression=100, seed=0)


@pytest.fixture(scope="session")
def glb_both(teacher: Any, tmp_path_factory: pytest.TempPathFactory, talk_motion: Any) -> Path:
    """Splats + mesh + the talking motion as an animation."""
    pytest.importorskip("xatlas", reason="the mesh export needs xatlas (pip install xatlas)")
    from headstudio.output.gltf.writer import export_glb

    p = tmp_path_factory.mktemp("glb") / "head.glb"
    export_glb(teacher, p, motion=talk_motion, texture_size=TEXTURE)
    return p


@pytest.fixture(scope="session")
def sh_avatar(head: FlameModel, basis: Any) -> Any:
    """An SH degree 2 avatar with random higher coefficients (splat values must survive)."""
    from headstudio.animate.arkit import store_basis
    from headstudio.avatar import Avatar
    from headstudio.config import InitConfig

    av = Avatar.initialize(head, InitConfig(points_per_face=1, sh_degree=2), torch.Generator().manual_seed(3))
    with torch.no_grad():
        g = torch.Generator().manual_seed(4)
        av.sh.copy_(0.3 * torch.randn(av.sh.shape, generator=g))
        av.opacity_logits.copy_(torch.randn(av.opacity_logits.shape, generator=g))
        av.log_scales.add_(0.2 * torch.randn(av.log_scales.shape, generator=g))
    store_basis(av, basis)
    return av
