"""The fields of a trainer checkpoint dict, checked one by one, and its content digest.

``torch.load`` checks no CRC: a flipped bit in a tensor loads as another number, and a damaged
structure loads as whatever the unpickler makes of it. :func:`content_digest` hashes every entry
(so the writer can record it and the reader compare), and :func:`check_fields` checks each field
the trainer reads (type, shape against the Gaussian count, finite floats) so that a damaged file
is one :class:`FieldError` naming the field, not an error deep inside ``Trainer.resume``.
:mod:`headstudio.train.checkpoint` turns it into the user's one-line error.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "DIGEST_KEY", "FieldError", "GAUSSIAN_COLUMNS", "content_digest", "check_fields", "short", "tensor_field",
]  # fmt: skip

#: The key of the content digest (absent in format-1 files of earlier versions).
DIGEST_KEY = "sha256"

#: The Gaussian parameters of a checkpoint and their columns (0: ``[N]``; ``None``: ``[N, K, 3]``).
GAUSSIAN_COLUMNS: dict[str, int | None] = {
    "means": 3, "quats": 4, "log_scales": 3, "opacity_logits": 0, "sh": None,
}  # fmt: skip


class FieldError(ValueError):
    """A checkpoint field of the wrong type, shape or value; the message names it."""


def content_digest(d: dict[str, Any]) -> str:
    """SHA-256 of the entries of ``d`` except :data:`DIGEST_KEY`: every key, scalar and tensor
    (dtype, shape and bytes) in order, so any change to the contents changes it.

    Raises:
        TypeError: ``d`` holds something a checkpoint cannot (not a tensor, container or scalar).
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in d.items() if k != DIGEST_KEY})
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}{obj!r};".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__}")


def short(v: Any) -> str:
    """``repr(v)`` cut to 60 characters (a tensor by its shape)."""
    text = repr(v) if not isinstance(v, Tensor) else f"a tensor {list(v.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


def tensor_field(x: Any, name: str, shape: tuple[int | None, ...], kind: str = "f") -> Tensor:
    """``x`` checked: a tensor of ``shape`` (``None``: any size), of finite floats (``kind="f"``)
    or integers (``"i"``).

    Raises:
        FieldError: naming ``name``, what it is and what was expected.
    """
    want = "[" + ", ".join("·" if d is None else str(d) for d in shape) + "]"
    if not isinstance(x, Tensor):
        raise FieldError(f"'{name}' is a {type(x).__name__}; expected a tensor {want}")
    if x.dim() != len(shape) or any(d is not None and d != g for d, g in zip(shape, x.shape, strict=True)):
        raise FieldError(f"'{name}' has shape {list(x.shape)}; expected {want}")
    if kind == "f" and not (x.is_floating_point() and bool(torch.isfinite(x).all())):
        raise FieldError(f"'{name}' is {x.dtype} with non-finite values; expected finite floats")
    if kind == "i" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise FieldError(f"'{name}' is {x.dtype}; expected integers")
    return x


def _typed(d: dict[str, Any], key: str, kind: type) -> Any:
    if key not in d:
        raise FieldError(f"the entry '{key}' is missing")
    v = d[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is int):
        raise FieldError(f"'{key}' is {short(v)}; expected {kind.__name__}")
    return v


def _check_optimizer(opt: Any, tensors: dict[str, Tensor]) -> None:
    """Adam's state matches the parameters: each named group's moments have its parameter's shape."""
    if (
        not isinstance(opt, dict)
        or not isinstance(opt.get("state"), dict)
        or not isinstance(opt.get("param_groups"), list)
    ):
        raise FieldError("'optimizer' is not an optimizer state (state, param_groups)")
    for group in opt["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise FieldError(f"'optimizer.param_groups' holds {short(group)}")
        name = group.get("name")
        for pid in group["params"]:
            moments = opt["state"].get(pid, {})
            if not isinstance(moments, dict):
                raise FieldError(f"'optimizer.state[{pid}]' is {short(moments)}")
            for key, value in moments.items():
                if key != "step" and name in tensors:
                    tensor_field(value, f"optimizer.state[{pid}].{key}", tuple(tensors[name].shape))


def _check_rng(rng: Any) -> None:
    ok = (
        isinstance(rng, dict)
        and isinstance(rng.get("torch"), Tensor)
        and isinstance(rng.get("numpy"), (tuple, list))
        and len(rng["numpy"]) == 5
        and isinstance(rng.get("python"), (tuple, list))
        and len(rng["python"]) == 3
        and isinstance(rng.get("generators"), dict)
        and all(isinstance(g, Tensor) for g in rng["generators"].values())
    )
    if not ok:
        raise FieldError("'rng' is not the random state headstudio saves")


def check_fields(d: dict[str, Any]) -> dict[str, Any]:
    """The fields of a format-1 checkpoint dict, each checked (the densification state aside).

    Returns:
        ``step, num_skipped, num_gaussians, gaussians, face_ids, shape, optimizer, guidance, rng,
        config, prompt, head_hash``.

    Raises:
        FieldError: the first field of the wrong type or shape, or with non-finite values.
    """
    step = _typed(d, "step", int)
    skipped = d.get("num_skipped", 0)
    n = _typed(d, "num_gaussians", int)
    if step < 0 or n < 0 or not isinstance(skipped, int) or skipped < 0:
        raise FieldError(
            f"'step' {step}, 'num_gaussians' {n} and 'num_skipped' {skipped!r} must be integers >= 0"
        )
    a = _typed(d, "avatar", dict)
    g = _typed(a, "gaussians", dict)
    gaussians = {}
    for name, cols in GAUSSIAN_COLUMNS.items():
        shape = (n, None, 3) if cols is None else (n,) if cols == 0 else (n, cols)
        gaussians[name] = tensor_field(g.get(name), f"avatar.gaussians.{name}", shape)
    face_ids = tensor_field(a.get("face_ids"), "avatar.face_ids", (n,), kind="i")
    shape_param = tensor_field(a.get("shape"), "avatar.shape", (1, None))
    _check_optimizer(d.get("optimizer"), {**gaussians, "shape": shape_param})
    _check_rng(d.get("rng"))
    for key, kind in (("guidance", dict), ("prompt", str), ("head_hash", str)):
        if d.get(key) is not None and not isinstance(d[key], kind):
            raise FieldError(f"'{key}' is {short(d[key])}; expected {kind.__name__} or None")
    return {
        "step": step, "num_skipped": skipped, "num_gaussians": n, "gaussians": gaussians,
        "face_ids": face_ids, "shape": shape_param, "optimizer": d["optimizer"],
        "guidance": d.get("guidance"), "rng": d["rng"], "config": _typed(d, "config", dict),
        "prompt": d.get("prompt"), "head_hash": d.get("head_hash"),
    }  # fmt: skip
