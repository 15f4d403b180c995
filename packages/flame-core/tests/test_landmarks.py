"""LandmarkEmbedding file formats, evaluation, selection; FLAME 68-point static+dynamic reader."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from flame_core.landmarks import Flame68Embedding, LandmarkEmbedding
from flame_core.procedural import build_procedural_head


@pytest.fixture(scope="module")
def head():
    return build_procedural_head()


def _verts(head) -> torch.Tensor:
    return torch.as_tensor(head.model_dict["v_template"], dtype=torch.float32)[None]


def test_call_matches_manual_barycentric(head):
    emb = head.embedding
    v, f = _verts(head), torch.as_tensor(head.model_dict["f"])
    out = emb(v.expand(2, -1, -1), f)
    assert out.shape == (2, 478, 3)
    i = 100
    tri = f[emb.face_idx[i]]
    manual = (v[0, tri] * emb.bary_coords[i][:, None]).sum(0)
    torch.testing.assert_close(out[1, i], manual)


def test_save_load_105(head, tmp_path):
    p = tmp_path / "emb.npz"
    head.embedding105.save(p)
    data = np.load(p)
    assert set(data.files) == {"lmk_face_idx", "lmk_b_coords", "landmark_indices"}
    e = LandmarkEmbedding.load(p)
    torch.testing.assert_close(e.face_idx, head.embedding105.face_idx)
    torch.testing.assert_close(e.bary_coords, head.embedding105.bary_coords)
    assert len(set(e.landmark_indices.tolist())) == 105


def test_vertex_index_map(head, tmp_path):
    f = head.model_dict["f"]
    ids = np.arange(0, 4680, 10)
    np.save(tmp_path / "map.npy", ids)
    e = LandmarkEmbedding.load(tmp_path / "map.npy", faces=f)
    v = _verts(head)
    torch.testing.assert_close(e(v, torch.as_tensor(f))[0], v[0, ids])
    with pytest.raises(ValueError, match="faces"):
        LandmarkEmbedding.load(tmp_path / "map.npy")
    assert e.landmark_indices.tolist() == list(range(468))
    # npz with a named map and the MediaPipe id of each row (a partial map)
    mp_ids = np.arange(0, 468, 2)
    np.savez(tmp_path / "map.npz", vertex_ids=ids[:234], landmark_indices=mp_ids)
    e2 = LandmarkEmbedding.load(tmp_path / "map.npz", faces=f)
    assert e2.landmark_indices.tolist() == mp_ids.tolist()
    torch.testing.assert_close(e2(v, torch.as_tensor(f))[0], v[0, ids[:234]])
    np.savez(tmp_path / "bad_map.npz", vertex_ids=ids[:234], landmark_indices=mp_ids[:5])
    with pytest.raises(ValueError, match="bad_map.npz: landmark_indices has 5 entries"):
        LandmarkEmbedding.load(tmp_path / "bad_map.npz", faces=f)
    np.save(tmp_path / "oob.npy", np.array([0, 10**7]))
    with pytest.raises(ValueError, match="oob.npy: vertex index map has ids"):
        LandmarkEmbedding.load(tmp_path / "oob.npy", faces=f)


def test_select_and_to(head):
    e = head.embedding.select([14, 13, 473])
    assert e.landmark_indices.tolist() == [14, 13, 473]
    assert e.to("cpu").face_idx.tolist() == head.embedding.face_idx[[14, 13, 473]].tolist()
    with pytest.raises(KeyError, match="999"):
        head.embedding.select([999])


def test_wrong_files(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="bad.npz"):
        LandmarkEmbedding.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3), bar=np.ones(3))
    with pytest.raises(ValueError, match="unknown landmark file"):
        LandmarkEmbedding.load(tmp_path / "other.npz")
    np.savez(tmp_path / "good.npz", lmk_face_idx=np.zeros(3, int))
    raw = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])  # a damaged zip: BadZipFile inside numpy
    with pytest.raises(ValueError, match="cut.npz: not a landmark embedding"):
        LandmarkEmbedding.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "partial.npz", lmk_face_idx=np.zeros(3, int))
    with pytest.raises(ValueError, match="lmk_b_coords"):
        LandmarkEmbedding.load(tmp_path / "partial.npz")
    with pytest.raises(ValueError, match="must match"):
        LandmarkEmbedding(np.zeros(3), np.zeros((2, 3)), np.zeros(3))


def _write_flame68(folder, F: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    st_face = rng.integers(0, F, 51)
    st_bary = rng.dirichlet(np.ones(3), 51)
    with open(folder / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": st_face, "lmk_b_coords": st_bary}, fh, protocol=2)
    dy_face = rng.integers(0, F, (79, 17))
    dy_bary = rng.dirichlet(np.ones(3), (79, 17))
    np.save(folder / "flame_dynamic_embedding.npy", {"lmk_face_idx": dy_face, "lmk_b_coords": dy_bary})
    return st_face, st_bary, dy_face, dy_bary


def test_flame68_static_dynamic(head, tmp_path):
    F = len(head.model_dict["f"])
    st_face, st_bary, dy_face, dy_bary = _write_flame68(tmp_path, F)
    e = Flame68Embedding(tmp_path / "flame_static_embedding.pkl", tmp_path / "flame_dynamic_embedding.npy")
    v, f = _verts(head).expand(3, -1, -1), torch.as_tensor(head.model_dict["f"])
    # FLAME's table: row 0 is frontal, rows 1..39 yaw -1..-39 degrees, rows 40..78 yaw +1..+39
    yaw = torch.tensor([0.0, np.deg2rad(-39.0), np.deg2rad(20.2)])
    assert e.contour_rows(yaw).tolist() == [0, 39, 59]
    assert e.contour_rows(torch.tensor([np.deg2rad(-80.0), np.deg2rad(80.0)])).tolist() == [39, 78]
    out = e(v, f, yaw)
    assert out.shape == (3, 68, 3)
    for b, row in enumerate((0, 39, 59)):
        fv = v[0, f[torch.as_tensor(dy_face[row, 3])]]
        want = (fv * torch.as_tensor(dy_bary[row, 3], dtype=torch.float32)[:, None]).sum(0)
        torch.testing.assert_close(out[b, 3], want)
    # the 51 static points follow the 17 contour points (iBUG-68 order)
    fv = v[0, f[torch.as_tensor(st_face[5])]]
    torch.testing.assert_close(
        out[0, 17 + 5], (fv * torch.as_tensor(st_bary[5], dtype=torch.float32)[:, None]).sum(0)
    )
    with pytest.raises(ValueError, match="static"):
        Flame68Embedding(tmp_path / "flame_dynamic_embedding.npy", tmp_path / "flame_dynamic_embedding.npy")
    with pytest.raises(ValueError, match="one per pose"):
        e(v, f, yaw[:2])
    np.save(tmp_path / "short.npy", {"lmk_face_idx": dy_face[:10], "lmk_b_coords": dy_bary[:10]})
    with pytest.raises(ValueError, match=r"short.npy.*expected \[79, 17\]"):
        Flame68Embedding(tmp_path / "flame_static_embedding.pkl", tmp_path / "short.npy")


def test_flame68_rows_match_smplx_lookup():
    """Row choice equals smplx's ``find_dynamic_lmk_idx_and_bcoords`` (FLAME's reference code)."""
    smplx_lbs = pytest.importorskip("smplx.lbs")
    g = torch.Generator().manual_seed(0)
    B = 400
    pose = torch.zeros(B, 5, 3, dtype=torch.float64)
    pose[:, 0] = torch.randn(B, 3, generator=g, dtype=torch.float64) * 0.15
    pose[:, 1] = torch.randn(B, 3, generator=g, dtype=torch.float64) * 0.15
    pose[:, :2, 1] += (torch.rand(B, 1, generator=g, dtype=torch.float64) - 0.5) * 2.4  # yaw up to ~70 deg
    table = torch.arange(79)[:, None].expand(79, 17).contiguous()
    rows_ref, _ = smplx_lbs.find_dynamic_lmk_idx_and_bcoords(
        torch.zeros(B, 1, 3, dtype=torch.float64), pose.reshape(B, 15), table,
        torch.zeros(79, 17, 3, dtype=torch.float64), torch.tensor([1, 0]),
    )  # fmt: skip
    yaw = Flame68Embedding.yaw_from_pose(pose[:, 0], pose[:, 1])
    rows = Flame68Embedding.contour_rows(None, yaw)  # type: ignore[arg-type]
    assert set(rows_ref[:, 0].tolist()) >= {0, 39, 78}  # frontal, both signs and both clamps seen
    assert rows.tolist() == rows_ref[:, 0].tolist()


def test_flame_folder_68_points_match_smplx(head, tmp_path):
    """``FlameModel.from_file`` picks up the 68-point files; landmarks equal ``smplx.FLAME``'s."""
    smplx = pytest.importorskip("smplx")
    from flame_core import FlameModel
    from flame_core.io import save_flame_pickle

    save_flame_pickle(head.model_dict, tmp_path / "FLAME_NEUTRAL.pkl")
    _write_flame68(tmp_path, len(head.model_dict["f"]), seed=1)
    ours = FlameModel.from_file(tmp_path, dtype=torch.float64)
    assert isinstance(ours.flame68_embedding, Flame68Embedding)
    ref = smplx.FLAME(
        str(tmp_path), num_betas=300,
        num_expression_coeffs=100, use_face_contour=True, batch_size=1, dtype=torch.float64,
    )  # fmt: skip
    g = torch.Generator().manual_seed(3)
    B = 6
    glob = torch.randn(B, 3, generator=g, dtype=torch.float64) * 0.1
    glob[:, 1] = torch.linspace(-0.6, 0.6, B, dtype=torch.float64)
    neck = torch.randn(B, 3, generator=g, dtype=torch.float64) * 0.1
    jaw = torch.rand(B, 3, generator=g, dtype=torch.float64) * 0.1
    expr = torch.randn(B, 100, generator=g, dtype=torch.float64)
    with torch.no_grad():
        r = ref(
            global_orient=glob,
            neck_pose=neck,
            jaw_pose=jaw,
            expression=expr,
            betas=torch.zeros(B, 300, dtype=torch.float64),
            leye_pose=torch.zeros(B, 3, dtype=torch.float64),
            reye_pose=torch.zeros(B, 3, dtype=torch.float64),
            transl=torch.zeros(B, 3, dtype=torch.float64),
        )
        out = ours(global_orient=glob, neck_pose=neck, jaw_pose=jaw, expression=expr)
        # smplx's FLAME takes the yaw from the root alone (its NECK_IDX is 0); FLAME's own
        # PyTorch code and DECA compose root and neck, as yaw_from_pose(glob, neck) does
        yaw = Flame68Embedding.yaw_from_pose(glob, torch.zeros_like(neck))
        lmk = ours.flame68_embedding(out.vertices, ours.faces, yaw)
    ref_lmk = r.joints[:, 5:]  # smplx: 51 static, then the 17 contour points
    torch.testing.assert_close(lmk[:, 17:], ref_lmk[:, :51], atol=1e-6, rtol=0)
    torch.testing.assert_close(lmk[:, :17], ref_lmk[:, 51:], atol=1e-6, rtol=0)
    assert FlameModel.from_file(tmp_path / "FLAME_NEUTRAL.pkl").flame68_embedding is not None
    (tmp_path / "flame_dynamic_embedding.npy").unlink()
    assert FlameModel.from_file(tmp_path).flame68_embedding is None  # both files or none
