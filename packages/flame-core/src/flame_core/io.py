"""Read and write FLAME model pickles without chumpy.

The official FLAME 2020 / 2023 files were written by Python 2 with ``chumpy`` arrays and a
``scipy.sparse`` joint regressor inside. :func:`load_flame_pickle` unpickles them with
``encoding="latin1"`` and an unpickler that replaces every ``chumpy`` class by a stand-in
holding the plain array (a chumpy ``Ch`` pickles its value as the ``x`` entry of its state), so
chumpy is never imported. :func:`save_flame_pickle` writes the same layout (protocol 2, sparse
``J_regressor``), which ``smplx.FLAME`` also reads.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

__all__ = ["FlameFileError", "load_flame_pickle", "save_flame_pickle", "FLAME_KEYS", "NUM_JOINTS"]

NUM_JOINTS = 5
FLAME_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


class FlameFileError(ValueError):
    """A file that is not a usable FLAME model (message names the file, the key and the expected shape)."""


class _ChumpyStandIn:
    """Takes the place of any ``chumpy`` class while unpickling; keeps the pickled state."""

    _chumpy_class = "chumpy.ch.Ch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}
        if args:
            self.state["x"] = args[0]

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state) if isinstance(state, dict) else {"x": state}

    def value(self) -> np.ndarray:
        """The array this chumpy object evaluates to (plain ``Ch`` and simple reorderings)."""
        st, name = self.state, self._chumpy_class.rsplit(".", 1)[-1]
        if "x" in st and name not in ("Select", "transpose", "reshape", "Reorder"):
            return np.asarray(_to_numpy(st["x"]))
        a = np.asarray(_to_numpy(st.get("a"))) if "a" in st else None
        if a is not None and name == "Select":
            out = a.ravel()[np.asarray(st["idxs"]).ravel()]
            shape = st.get("preferred_shape")
            return out.reshape(shape) if shape is not None else out
        if a is not None and name == "transpose":
            return np.transpose(a, st.get("axes"))
        if a is not None and name == "reshape":
            return np.reshape(a, st["newshape"])
        raise TypeError(f"cannot evaluate chumpy object {self._chumpy_class} (state keys {sorted(st)})")


class _SparseStandIn:
    """Takes the place of a (possibly very old) ``scipy.sparse`` csc/csr matrix while unpickling."""

    _fmt = "csc"

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = dict(state)

    def value(self) -> np.ndarray:
        st = self.state
        shape = tuple(st.get("_shape", st.get("shape", ())))
        fmt = st.get("format", self._fmt)
        if isinstance(fmt, bytes):
            fmt = fmt.decode("latin1")
        cls = scipy.sparse.csr_matrix if fmt == "csr" else scipy.sparse.csc_matrix
        mat = cls((np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])), shape=shape)
        return _dense(mat)


class _FlameUnpickler(pickle.Unpickler):
    """Unpickler mapping chumpy classes to :class:`_ChumpyStandIn` and sparse matrices to dense."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return type(name, (_ChumpyStandIn,), {"_chumpy_class": f"{module}.{name}"})
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
            return type(name, (_SparseStandIn,), {"_fmt": name[:3]})
        if module == "numpy.core" or module.startswith("numpy.core."):  # numpy 2 renamed the package
            try:
                return super().find_class(module.replace("numpy.core", "numpy._core", 1), name)
            except (ImportError, AttributeError):  # numpy < 2
                return super().find_class(module, name)
        return super().find_class(module, name)


def _dense(mat: Any) -> np.ndarray:
    """A sparse matrix as a dense array, its index arrays checked first: scipy trusts them, and a
    corrupt file's out-of-range index would make ``toarray`` write outside its buffer (a crash)."""
    if hasattr(mat, "check_format"):
        mat.check_format(full_check=True)  # ValueError naming what is wrong
    return mat.toarray()


def _to_numpy(obj: Any) -> Any:
    """Replace stand-ins and sparse matrices by dense numpy arrays (recursively in containers)."""
    if isinstance(obj, (_ChumpyStandIn, _SparseStandIn)):
        return obj.value()
    if scipy.sparse.issparse(obj):
        return _dense(obj)
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and any(isinstance(v, (_ChumpyStandIn, _SparseStandIn)) for v in obj):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def _check(path: Path, key: str, arr: Any, expected: str, ok: bool) -> None:
    if not ok:
        got = tuple(arr.shape) if hasattr(arr, "shape") else type(arr).__name__
        raise FlameFileError(f"{path}: key {key!r} has shape {got}; expected {expected}")


def _validate(d: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    """Check keys and shapes; return float64 / int64 arrays in the documented layout."""
    for key in FLAME_KEYS:
        if key not in d:
            raise FlameFileError(
                f"{path}: not a FLAME model: key {key!r} is missing (found {sorted(map(str, d))}); "
                f"a FLAME pickle has {', '.join(FLAME_KEYS)}"
            )
    out: dict[str, np.ndarray] = {}
    J = NUM_JOINTS
    try:
        arrs = {k: np.asarray(_to_numpy(d[k])) for k in FLAME_KEYS}
    except Exception as e:  # corrupt stand-in states raise anything (Key, Index, Type, Value...)
        raise FlameFileError(f"{path}: not a FLAME model: {e}") from e
    v = arrs["v_template"]
    _check(path, "v_template", v, "(V, 3)", v.ndim == 2 and v.shape[1] == 3 and v.shape[0] > 0)
    V = v.shape[0]
    for key, arr in arrs.items():
        if arr.dtype.kind not in "biuf":
            raise FlameFileError(f"{path}: key {key!r} has dtype {arr.dtype}; expected numbers")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise FlameFileError(f"{path}: key {key!r} contains NaN or inf")
    out["v_template"] = v.astype(np.float64)
    f = arrs["f"]
    _check(path, "f", f, "(F, 3) integer", f.ndim == 2 and f.shape[1] == 3 and f.dtype.kind in "iu")
    if f.size and (f.min() < 0 or f.max() >= V):
        raise FlameFileError(
            f"{path}: key 'f' has vertex ids in [{f.min()}, {f.max()}]; expected [0, {V - 1}]"
        )
    out["f"] = f.astype(np.int64)
    sd = arrs["shapedirs"]
    _check(path, "shapedirs", sd, f"({V}, 3, S+E)", sd.ndim == 3 and sd.shape[:2] == (V, 3))
    out["shapedirs"] = sd.astype(np.float64)
    pd = arrs["posedirs"]
    P = 9 * (J - 1)
    if pd.ndim == 2 and pd.shape == (V * 3, P):
        pd = pd.reshape(V, 3, P)
    elif pd.ndim == 2 and pd.shape == (P, V * 3):
        pd = pd.T.reshape(V, 3, P)
    _check(path, "posedirs", pd, f"({V}, 3, {P}) or ({V * 3}, {P})", pd.shape == (V, 3, P))
    out["posedirs"] = pd.astype(np.float64)
    jr = arrs["J_regressor"]
    _check(path, "J_regressor", jr, f"({J}, {V})", jr.shape == (J, V))
    out["J_regressor"] = jr.astype(np.float64)
    w = arrs["weights"]
    _check(path, "weights", w, f"({V}, {J})", w.shape == (V, J))
    out["weights"] = w.astype(np.float64)
    kt = arrs["kintree_table"]
    _check(path, "kintree_table", kt, f"(2, {J}) integer", kt.shape == (2, J) and kt.dtype.kind in "iu")
    kt = kt.astype(np.int64)
    # the root's parent is stored as 2**32 - 1 in the official files (-1 in some converted ones)
    root_ok = kt[0, 0] >= J or kt[0, 0] < 0
    parents = kt[0, 1:]
    if not root_ok or (parents < 0).any() or (parents >= np.arange(1, J)).any():
        raise FlameFileError(
            f"{path}: key 'kintree_table' has parents {kt[0].tolist()}; expected the root first "
            f"(parent 4294967295 or -1) and every other joint after its parent"
        )
    kt = kt.copy()
    kt[0, 0] = 4294967295  # one spelling of "no parent", so equal models hash equally
    out["kintree_table"] = kt
    return out


def load_flame_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a FLAME model pickle (official 2020/2023 or our own) as plain numpy arrays.

    Returns ``v_template (V,3)``, ``f (F,3)`` int64, ``shapedirs (V,3,S+E)``,
    ``posedirs (V,3,36)``, ``J_regressor (5,V)`` dense, ``weights (V,5)``, ``kintree_table (2,5)``
    int64; floats are float64. chumpy is not needed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FlameFileError: not a pickle, not a dict, a missing key or a wrong shape (the message
            names the file, the key and the expected shape).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FLAME model file not found: {path}")
    try:
        with open(path, "rb") as fh:
            data = _FlameUnpickler(fh, encoding="latin1").load()
    except Exception as e:  # corrupt pickles raise almost anything (Overflow, Memory, Lookup...)
        raise FlameFileError(f"{path}: not a FLAME model pickle ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise FlameFileError(
            f"{path}: not a FLAME model: the pickle holds a {type(data).__name__}, not a dict"
        )
    return _validate(data, path)


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file (0o666 less the umask).

    ``tempfile.mkstemp`` creates owner-only (0600) files; :func:`atomic_path` gives its temporary
    file this mode before renaming it, so outputs are as readable as any other file the user writes.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (ending in ``suffix``); when the block succeeds
    it gets the usual file mode and is renamed onto ``path``, otherwise it is deleted, so a
    half-written file never appears under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_flame_pickle(d: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a FLAME-layout dict as a protocol-2 pickle, atomically (temporary file + rename).

    ``d`` needs the keys of :func:`load_flame_pickle`; ``J_regressor`` is stored as a
    ``scipy.sparse.csc_matrix`` like the official files. Extra keys are kept. The result loads
    with :func:`load_flame_pickle` and with ``smplx.FLAME``.
    """
    path = Path(path)
    missing = [k for k in FLAME_KEYS if k not in d]
    if missing:
        raise KeyError(f"save_flame_pickle: d lacks keys {missing}; expected all of {list(FLAME_KEYS)}")
    out: dict[str, Any] = {k: (v if scipy.sparse.issparse(v) else np.asarray(v)) for k, v in d.items()}
    _validate(out, path)  # refuse to write something we could not read back
    out["J_regressor"] = scipy.sparse.csc_matrix(np.asarray(_to_numpy(d["J_regressor"]), dtype=np.float64))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(out, fh, protocol=2)
