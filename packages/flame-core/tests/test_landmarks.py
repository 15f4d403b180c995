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
    np.savez(tmp_path / "partial.npz", lmk_face_idx=np.zeros(3, int))
    with pytest.raises(ValueError, match="lmk_b_coords"):
        LandmarkEmbedding.load(tmp_path / "partial.npz")
    with pytest.raises(ValueError, match="must match"):
        LandmarkEmbedding(np.zeros(3), np.zeros((2, 3)), np.zeros(3))


def test_flame68_static_dynamic(head, tmp_path):
    rng = np.random.default_rng(0)
    F = len(head.model_dict["f"])
    st_face = rng.integers(0, F, 51)
    st_bary = rng.dirichlet(np.ones(3), 51)
    with open(tmp_path / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": st_face, "lmk_b_coords": st_bary}, fh, protocol=2)
    dy_face = rng.integers(0, F, (79, 17))
    dy_bary = rng.dirichlet(np.ones(3), (79, 17))
    np.save(tmp_path / "flame_dynamic_embedding.npy", {"lmk_face_idx": dy_face, "lmk_b_coords": dy_bary})
    e = Flame68Embedding(tmp_path / "flame_static_embedding.pkl", tmp_path / "flame_dynamic_embedding.npy")
    v, f = _verts(head).expand(2, -1, -1), torch.as_tensor(head.model_dict["f"])
    out = e(v, f, torch.tensor([0.0, np.deg2rad(-39.0)]))
    assert out.shape == (2, 68, 3)
    fv = v[0, f[torch.as_tensor(dy_face[39, 3])]]
    torch.testing.assert_close(
        out[0, 3], (fv * torch.as_tensor(dy_bary[39, 3], dtype=torch.float32)[:, None]).sum(0)
    )
    fv = v[0, f[torch.as_tensor(dy_face[0, 3])]]
    torch.testing.assert_close(
        out[1, 3], (fv * torch.as_tensor(dy_bary[0, 3], dtype=torch.float32)[:, None]).sum(0)
    )
    with pytest.raises(ValueError, match="static"):
        Flame68Embedding(tmp_path / "flame_dynamic_embedding.npy", tmp_path / "flame_dynamic_embedding.npy")
