"""FLAME's animation parameters, named once.

:class:`FlameParams` is one batch of them, ``[B, ·]`` each; its field names are the keyword
arguments of :meth:`flame_core.FlameModel.forward` besides ``shape``, and its class constants name
the groups other code iterates over (the joint rotations, the poses), so no module spells the
list again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from torch import Tensor

__all__ = ["FlameParams"]


@dataclass
class FlameParams:
    """One batch of FLAME animation parameters (``None``: zeros).

    Attributes:
        expression: ``[B, E]`` expression coefficients.
        global_orient: ``[B, 3]`` axis-angle rotation of the root (the neck base).
        neck_pose: ``[B, 3]`` axis-angle rotation of the neck joint.
        jaw_pose: ``[B, 3]`` axis-angle rotation of the jaw.
        eye_pose: ``[B, 6]`` axis-angle rotations of the left then the right eye.
        translation: ``[B, 3]`` metres.
    """

    expression: Tensor | None = None
    global_orient: Tensor | None = None
    neck_pose: Tensor | None = None
    jaw_pose: Tensor | None = None
    eye_pose: Tensor | None = None
    translation: Tensor | None = None

    #: The ``[B, 3]`` axis-angle joint rotations, in FLAME's joint order.
    ROTATIONS: ClassVar[tuple[str, ...]] = ("global_orient", "neck_pose", "jaw_pose")
    #: Every pose input, in FLAME's joint order (``eye_pose`` holds two joints).
    POSES: ClassVar[tuple[str, ...]] = (*ROTATIONS, "eye_pose")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The parameter names: ``expression``, the poses, ``translation``."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Tensor | None]) -> FlameParams:
        """The parameters of ``FlameModel.forward``-style keyword arguments.

        Raises:
            ValueError: a name that is not a FLAME parameter (the message lists the names).
        """
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown FLAME parameters {unknown}; expected some of {list(cls.names())}")
        return cls(**kwargs)

    def kwargs(self) -> dict[str, Tensor]:
        """The given parameters as keyword arguments of ``FlameModel.forward`` (``None`` left out)."""
        return {n: v for n in self.names() if (v := getattr(self, n)) is not None}

    def map(self, fn: Callable[[Tensor], Tensor]) -> FlameParams:
        """These parameters with ``fn`` applied to each given tensor (``None`` stays ``None``), e.g.
        ``params.map(lambda t: t[:4])`` for the first four rows."""
        return replace(self, **{n: fn(v) for n, v in self.kwargs().items()})

    def to(self, *args: Any, **kwargs: Any) -> FlameParams:
        """Every given tensor moved or cast with ``Tensor.to(*args, **kwargs)``."""
        return self.map(lambda t: t.to(*args, **kwargs))
