"""The pose-corrective blend through oneDNN's packed linear (:class:`OneDnnBlend`; why and how
fast: :mod:`flame_core.lbs`, which re-exports it)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["OneDnnBlend", "onednn_available"]


def onednn_available() -> bool:
    """Whether this torch build can run :class:`OneDnnBlend` (oneDNN with prepacked linear weights)."""
    try:
        return (
            torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        )
    except (AttributeError, RuntimeError):
        return False


def _pack(weight: torch.Tensor) -> torch.Tensor:
    """``weight [N, K]`` reordered once into oneDNN's blocked inner-product layout (opaque tensor)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), None)


def _linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``bias + x @ W.T`` with ``packed`` from :func:`_pack` (``W [N, K]``): ``[B, K] -> [B, N]``."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


class OneDnnBlend:
    """``bias + x @ dirs`` through oneDNN's inner product, with a matching backward (CPU float32).

    The blendshape product is a short, wide GEMM (``[B, K] x [K, N]`` with ``K`` ~ 440 and
    ``N = 3V``): at small ``B`` it only streams the ``K·N`` matrix from memory, so the layout of
    that matrix decides its speed. ``dirs`` is reordered ONCE into oneDNN's blocked weight layout
    (the layout its inner-product kernel streams contiguously, picked for an unknown batch size);
    oneDNN then never reorders per call. On the AMD EPYC (AVX-512) machine this was 1.5x
    (batch 1) to 2.5x (batch 256) faster than ``torch.addmm`` (MKL sgemm) on the same matrix, and
    about 2x faster than oneDNN on the plain row-major matrix at batch 8.

    The backward (gradient to ``x``: ``grad @ dirs.T``) uses a second packed copy, of ``dirs``
    itself as the weight, made on the first backward. ``dirs`` and ``bias`` get no gradient
    (they are constants). Differentiable once (a double backward raises).

    Args:
        dirs: ``[K, N]`` float32 CPU. bias: ``[N]``.
    """

    def __init__(self, dirs: torch.Tensor, bias: torch.Tensor) -> None:
        if dirs.dtype != torch.float32 or dirs.device.type != "cpu":
            raise ValueError(f"OneDnnBlend needs float32 CPU tensors; got {dirs.dtype} on {dirs.device}")
        if dirs.ndim != 2 or bias.shape != dirs.shape[1:]:
            raise ValueError(
                f"OneDnnBlend needs dirs [K, N] and bias [N]; got {tuple(dirs.shape)} and {tuple(bias.shape)}"
            )
        self._dirs = dirs.detach()
        self.weight = _pack(dirs.t())  # [N, K] as the inner product's weight
        self.bias = bias.detach().contiguous()
        self._weight_back: torch.Tensor | None = None

    @property
    def weight_back(self) -> torch.Tensor:
        """``dirs [K, N]`` packed as the weight of the backward product (made on first use)."""
        if self._weight_back is None:
            self._weight_back = _pack(self._dirs)
        return self._weight_back

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, K] -> [B, N]``."""
        return _OneDnnBlendFn.apply(x, self)


class _OneDnnBlendFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, blend: OneDnnBlend) -> torch.Tensor:  # type: ignore[override]
        ctx.blend = blend
        return _linear(x, blend.weight, blend.bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return _linear(grad, ctx.blend.weight_back, None), None
