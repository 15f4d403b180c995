"""FLAME pickle loading without chumpy, validation errors, and the saver."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch
from flame_core.io import FLAME_KEYS, FlameFileError, load_flame_pickle, save_flame_pickle
from flame_core.model import FlameModel, split_shapedirs

V, F = 12, 8


def _tiny_dict(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.random((V, 5))
    jr = rng.random((5, V)) * (rng.random((5, V)) > 0.5)
    jr[:, 0] += 0.1
    return {
        "v_template": rng.normal(size=(V, 3)),
        "f": rng.integers(0, V, size=(F, 3)).astype(np.int64),
        "shapedirs": rng.normal(size=(V, 3, 400)),
        "posedirs": rng.normal(size=(V, 3, 36)),
        "J_regressor": jr / jr.sum(1, keepdims=True),
        "weights": w / w.sum(1, keepdims=True),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
    }


def _install_fake_chumpy() -> dict[str, types.ModuleType]:
    """A stand-in ``chumpy`` package whose classes pickle like chumpy's (state dict with ``x``)."""
    pkg = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False

        def __getstate__(self):
            return dict(self.__dict__)

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape
            self._dirty_vars = set()

        def __getstate__(self):
            return dict(self.__dict__)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch.Ch, reordering.Select = Ch, Select
    pkg.ch, pkg.reordering = ch, reordering
    mods = {"chumpy": pkg, "chumpy.ch": ch, "chumpy.reordering": reordering}
    sys.modules.update(mods)
    return mods


def _write_chumpy_pickle(d: dict[str, np.ndarray], path, protocol: int = 2) -> None:
    mods = _install_fake_chumpy()
    try:
        Ch, Select = mods["chumpy.ch"].Ch, mods["chumpy.reordering"].Select
        out = dict(d)
        out["v_template"] = Ch(d["v_template"])
        out["shapedirs"] = Ch(d["shapedirs"])
        # weights as a reordering of a Ch (as some official SMPL-family files have)
        out["weights"] = Select(Ch(d["weights"].ravel()), np.arange(d["weights"].size), d["weights"].shape)
        out["J_regressor"] = scipy.sparse.csc_matrix(d["J_regressor"])
        out["bs_style"] = "lbs"
        with open(path, "wb") as fh:
            pickle.dump(out, fh, protocol=protocol)
    finally:
        for name in mods:
            sys.modules.pop(name, None)


@pytest.mark.parametrize("protocol", [0, 2])
def test_loads_chumpy_pickle_without_chumpy(tmp_path, protocol):
    d = _tiny_dict()
    p = tmp_path / "generic_model.pkl"
    _write_chumpy_pickle(d, p, protocol)
    assert "chumpy" not in sys.modules
    raw = p.read_bytes()
    assert b"chumpy.ch" in raw and b"chumpy.reordering" in raw  # the file really references chumpy
    with pytest.raises(ModuleNotFoundError):
        with open(p, "rb") as fh:
            pickle.load(fh, encoding="latin1")  # a plain unpickler needs chumpy
    out = load_flame_pickle(p)
    assert "chumpy" not in sys.modules
    assert set(out) == set(FLAME_KEYS)
    for k in FLAME_KEYS:
        assert isinstance(out[k], np.ndarray), k
        np.testing.assert_array_equal(out[k], d[k], err_msg=k)
    assert out["v_template"].dtype == np.float64 and out["f"].dtype == np.int64


def test_save_load_roundtrip_and_format(tmp_path):
    d = _tiny_dict(1)
    p = tmp_path / "sub" / "m.pkl"
    save_flame_pickle(d, p)
    assert [q.name for q in p.parent.iterdir()] == ["m.pkl"]  # no temporary file left behind
    with open(p, "rb") as fh:
        assert fh.read(2) == b"\x80\x02"  # protocol 2
    with open(p, "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    assert isinstance(raw["J_regressor"], scipy.sparse.csc_matrix)
    out = load_flame_pickle(p)
    for k in FLAME_KEYS:
        np.testing.assert_array_equal(out[k], d[k], err_msg=k)


def test_posedirs_flat_layout_accepted(tmp_path):
    d = _tiny_dict(2)
    flat = dict(d, posedirs=d["posedirs"].reshape(V * 3, 36))
    p = tmp_path / "m.pkl"
    with open(p, "wb") as fh:
        pickle.dump(flat, fh, protocol=2)
    np.testing.assert_array_equal(load_flame_pickle(p)["posedirs"], d["posedirs"])


def _dump(tmp_path, obj, name="bad.pkl"):
    p = tmp_path / name
    with open(p, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    return p


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("shapedirs", np.zeros((V, 2, 400)), f"({V}, 3, S+E)"),
        ("posedirs", np.zeros((V, 3, 10)), f"({V}, 3, 36)"),
        ("J_regressor", np.zeros((4, V)), f"(5, {V})"),
        ("weights", np.zeros((V + 1, 5)), f"({V}, 5)"),
        ("kintree_table", np.zeros((2, 4), np.int64), "(2, 5)"),
        ("f", np.zeros((F, 4), np.int64), "(F, 3)"),
        ("v_template", np.zeros((V, 2)), "(V, 3)"),
    ],
)
def test_wrong_shape_names_file_key_and_shape(tmp_path, key, value, expected):
    p = _dump(tmp_path, dict(_tiny_dict(), **{key: value}))
    with pytest.raises(FlameFileError) as e:
        load_flame_pickle(p)
    msg = str(e.value)
    assert str(p) in msg and repr(key) in msg and expected in msg
    assert "\n" not in msg


def test_missing_key(tmp_path):
    d = _tiny_dict()
    del d["weights"]
    p = _dump(tmp_path, d)
    with pytest.raises(FlameFileError, match=r"bad\.pkl.*'weights' is missing"):
        load_flame_pickle(p)


def test_not_a_pickle_and_not_a_dict(tmp_path):
    p = tmp_path / "junk.pkl"
    p.write_bytes(b"this is not a pickle at all")
    with pytest.raises(FlameFileError, match="junk.pkl.*not a FLAME model pickle"):
        load_flame_pickle(p)
    with pytest.raises(FlameFileError, match="holds a list"):
        load_flame_pickle(_dump(tmp_path, [1, 2, 3], "list.pkl"))
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_flame_pickle(tmp_path / "nope.pkl")
    assert issubclass(FlameFileError, ValueError)


def test_bad_values_rejected(tmp_path):
    d = _tiny_dict()
    d["f"] = d["f"].copy()
    d["f"][0, 0] = V  # out of range
    with pytest.raises(FlameFileError, match="'f'.*vertex ids"):
        load_flame_pickle(_dump(tmp_path, d))
    d = _tiny_dict()
    d["shapedirs"] = d["shapedirs"].copy()
    d["shapedirs"][0, 0, 0] = np.nan
    with pytest.raises(FlameFileError, match="'shapedirs' contains NaN"):
        load_flame_pickle(_dump(tmp_path, d))
    d = _tiny_dict()
    d["kintree_table"] = np.array([[4294967295, 0, 1, 4, 1], [0, 1, 2, 3, 4]])
    with pytest.raises(FlameFileError, match="kintree_table"):
        load_flame_pickle(_dump(tmp_path, d))


def test_save_refuses_bad_dict(tmp_path):
    d = _tiny_dict()
    with pytest.raises(KeyError, match="f"):
        save_flame_pickle({k: v for k, v in d.items() if k != "f"}, tmp_path / "x.pkl")
    with pytest.raises(FlameFileError, match="weights"):
        save_flame_pickle(dict(d, weights=np.zeros((3, 5))), tmp_path / "x.pkl")
    assert not list(tmp_path.iterdir())


def test_old_scipy_sparse_state_is_read(tmp_path):
    """Python-2 era files pickle ``scipy.sparse.csc.csc_matrix`` with a ``_shape`` state dict."""
    d = _tiny_dict(3)
    sp = scipy.sparse.csc_matrix(d["J_regressor"])
    fake = types.ModuleType("scipy.sparse.csc")

    class csc_matrix:  # noqa: N801 (the historical class name)
        def __reduce__(self):
            import copyreg

            state = {
                "_shape": sp.shape,
                "data": sp.data,
                "indices": sp.indices,
                "indptr": sp.indptr,
                "maxprint": 50,
            }
            return (copyreg._reconstructor, (csc_matrix, object, None), state)

    csc_matrix.__module__, csc_matrix.__qualname__ = "scipy.sparse.csc", "csc_matrix"
    fake.csc_matrix = csc_matrix
    saved = sys.modules.get("scipy.sparse.csc")
    sys.modules["scipy.sparse.csc"] = fake
    try:
        p = _dump(tmp_path, dict(d, J_regressor=csc_matrix()), "old.pkl")
    finally:
        if saved is None:
            sys.modules.pop("scipy.sparse.csc", None)
        else:
            sys.modules["scipy.sparse.csc"] = saved
    assert b"scipy.sparse.csc" in p.read_bytes()
    np.testing.assert_allclose(load_flame_pickle(p)["J_regressor"], d["J_regressor"])


def test_python2_era_numpy_paths(tmp_path):
    """Old files name ``numpy.core.multiarray``; numpy 2 calls it ``numpy._core``: no warning, same data."""
    import warnings

    d = _tiny_dict(4)
    raw = pickle.dumps(d, protocol=2)
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    p = tmp_path / "py2.pkl"
    p.write_bytes(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_flame_pickle(p)
    for k in FLAME_KEYS:
        np.testing.assert_array_equal(out[k], d[k], err_msg=k)


def test_flame2023_style_extras_are_ignored(tmp_path):
    """FLAME 2023-style files: chumpy posedirs, 400 shapedirs (300 + 100) and extra keys, among
    them a derived chumpy object (``J`` as ``MatVecMult``) that the loader must not evaluate."""
    d = _tiny_dict(5)
    mods = _install_fake_chumpy()
    ch_ops = types.ModuleType("chumpy.ch_ops")

    class MatVecMult:
        def __init__(self, mtx, vec):
            self.mtx, self.vec = mtx, vec

        def __getstate__(self):
            return dict(self.__dict__)

    MatVecMult.__module__, MatVecMult.__qualname__ = "chumpy.ch_ops", "MatVecMult"
    ch_ops.MatVecMult = MatVecMult
    sys.modules["chumpy.ch_ops"] = ch_ops
    try:
        Ch = mods["chumpy.ch"].Ch
        out = dict(
            d, v_template=Ch(d["v_template"]), shapedirs=Ch(d["shapedirs"]), posedirs=Ch(d["posedirs"])
        )
        out["J_regressor"] = scipy.sparse.csc_matrix(d["J_regressor"])
        out["J"] = MatVecMult(out["J_regressor"], Ch(d["v_template"]))
        out.update(bs_style="lbs", bs_type="lrotmin", vt=np.zeros((3, 2)), ft=np.zeros((F, 3), np.int64))
        p = tmp_path / "flame2023.pkl"
        with open(p, "wb") as fh:
            pickle.dump(out, fh, protocol=2)
    finally:
        for name in [*mods, "chumpy.ch_ops"]:
            sys.modules.pop(name, None)
    loaded = load_flame_pickle(p)
    assert set(loaded) == set(FLAME_KEYS)
    for k in FLAME_KEYS:
        np.testing.assert_array_equal(loaded[k], d[k], err_msg=k)

    assert split_shapedirs(400) == (300, 100)
    m = FlameModel.from_file(tmp_path, num_shape=300, num_expression=100)
    assert (m.num_shape, m.num_expression) == (300, 100)
    # the expression basis is the file's last 100 components: a unit expression 0 adds shapedirs[..., 300]
    e = np.zeros((1, 100), np.float32)
    e[0, 0] = 1.0
    got = m(expression=torch.as_tensor(e)).vertices[0].double().numpy()
    np.testing.assert_allclose(got, d["v_template"] + d["shapedirs"][..., 300], atol=1e-5)


@pytest.mark.parametrize(
    ("L", "split"), [(400, (300, 100)), (350, (300, 50)), (20, (10, 10)), (300, (150, 150))]
)
def test_split_shapedirs(L, split):
    assert split_shapedirs(L) == split


@pytest.mark.parametrize("L", [401, 21])
def test_split_shapedirs_rejects(L):
    with pytest.raises(ValueError, match=f"{L} components"):
        split_shapedirs(L)


@pytest.mark.parametrize("root", [-1, 4294967295, 2**31 - 1])
def test_kintree_root_marker_spellings(tmp_path, root):
    """The root's "no parent" may be 2**32 - 1 (official, uint32), -1 (converted files, signed) or
    any other out-of-range id; all load as the same model (same array, same identity hash)."""
    d = _tiny_dict(6)
    kt = np.array([[root, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
    p = tmp_path / "m.pkl"
    with open(p, "wb") as fh:
        pickle.dump(dict(d, kintree_table=kt), fh, protocol=2)
    out = load_flame_pickle(p)
    np.testing.assert_array_equal(out["kintree_table"], d["kintree_table"])
    assert FlameModel(out).parents == [-1, 0, 1, 1, 1]
    bad = np.array([[root, 0, 1, 1, -1], [0, 1, 2, 3, 4]], dtype=np.int64)  # a second root
    with open(p, "wb") as fh:
        pickle.dump(dict(d, kintree_table=bad), fh, protocol=2)
    with pytest.raises(FlameFileError, match="kintree_table"):
        load_flame_pickle(p)


def test_corrupt_pickles_are_flame_file_errors(tmp_path):
    """Corrupt bytes make the unpickler raise almost anything (OverflowError, LookupError, ...):
    every such failure is a one-line FlameFileError naming the file."""
    good = pickle.dumps(_tiny_dict(7), protocol=2)
    assert b"latin1" in good
    samples = {
        "frame.pkl": b"\x80\x04\x95" + b"\xff" * 8,  # FRAME length beyond sys.maxsize: OverflowError
        "bytes8.pkl": b"\x80\x04\x8e" + b"\xff" * 8,  # BINBYTES8 likewise
        "encoding.pkl": good.replace(b"latin1", b"latinX"),  # numpy's payload encoding: LookupError
        "empty.pkl": b"",
    }
    for name, raw in samples.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(FlameFileError, match=rf"{name}: not a FLAME model pickle") as info:
            load_flame_pickle(tmp_path / name)
        assert "\n" not in str(info.value)
