"""The densification schedule, statistics and step report of :mod:`rigged_gaussians.strategy`
(which re-exports them): :class:`DensifyConfig`, :class:`DensifyState`, :class:`DensifyInfo`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

__all__ = ["PARAM_KEYS", "DensifyConfig", "DensifyInfo", "DensifyState"]

#: The parameters every operation reads: local means, quaternions, log-scales and opacity logits.
PARAM_KEYS = ("means", "quats", "log_scales", "opacity_logits")


@dataclass
class DensifyConfig:
    """Densification schedule and thresholds (defaults: the public HeadStudio code, docs/METHOD.md).

    Sizes are fractions of the scene's extent: ``scene_extent`` scene units, which the caller
    turns into world units with its ``scene_scale`` (world units per scene unit).

    Attributes:
        enabled: densify and prune at all (``False``: the hooks do nothing).
        grad_threshold: densify Gaussians whose average normalised gradient (dimensionless: each
            step's values have unit L2 norm over the visible Gaussians) is ``>=`` this.
        densify_from, densify_until, densify_every: grow + prune on steps in
            ``[densify_from, densify_until]`` (inclusive) that are multiples of
            ``densify_every`` (defaults: 600, 900, ..., 1800, the public code's events).
        prune_from, prune_until, prune_every: the prune-only phase (defaults: 2700 and 3000).
        min_opacity: prune Gaussians whose (activated) opacity is below this.
        max_screen_size: prune Gaussians whose screen radius (pixels of the training render,
            max since the last densification) exceeds this, from step ``screen_size_from`` on;
            0 disables.
        max_world_size: prune Gaussians whose largest world scale exceeds
            ``max_world_size * scene_extent`` (only when ``sqrt_areas`` is given); 0 disables.
        percent_dense: Gaussians whose largest world scale is ``<= percent_dense * scene_extent``
            are cloned, larger ones split.
        split_factor: children per split Gaussian.
        split_scale_divisor: children's scales are the parent's divided by this
            (3DGS: ``0.8 * split_factor``).
        max_gaussians: the budget: growing never takes the count above it (highest statistic
            first); 0 means no budget.
        scene_extent: the scene's extent in scene units (the public code's ``cameras_extent``);
            the world extent is ``scene_extent * scene_scale``.
        screen_size_from: the step from which ``max_screen_size`` prunes (public code: 1500).
    """

    enabled: bool = True
    grad_threshold: float = 0.001
    densify_from: int = 600
    densify_until: int = 1800
    densify_every: int = 300
    prune_from: int = 2700
    prune_until: int = 3000
    prune_every: int = 300
    min_opacity: float = 0.005
    max_screen_size: float = 60.0
    max_world_size: float = 0.03
    percent_dense: float = 0.01
    split_factor: int = 2
    split_scale_divisor: float = 1.6
    max_gaussians: int = 500_000
    scene_extent: float = 4.0
    screen_size_from: int = 1500

    def __post_init__(self) -> None:
        # "<name>: expected <what>, got <value>": headstudio's config shows <what> for its key
        for name in ("densify_every", "prune_every", "split_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.split_scale_divisor <= 0:
            raise ValueError(
                f"split_scale_divisor: expected a positive number, got {self.split_scale_divisor}"
            )
        if self.max_gaussians < 0:
            raise ValueError(
                f"max_gaussians: expected an integer >= 0 (0: no budget), got {self.max_gaussians}"
            )
        if self.scene_extent <= 0:
            raise ValueError(
                f"scene_extent: expected a positive number (scene units), got {self.scene_extent}"
            )

    def is_densify_step(self, step: int) -> bool:
        """Whether ``step`` grows (and prunes)."""
        return (
            self.enabled
            and self.densify_from <= step <= self.densify_until
            and step % self.densify_every == 0
        )

    def is_prune_step(self, step: int) -> bool:
        """Whether ``step`` only prunes."""
        return (
            self.enabled
            and not self.is_densify_step(step)
            and self.prune_from <= step <= self.prune_until
            and step % self.prune_every == 0
        )

    def is_active(self, step: int) -> bool:
        """Whether ``step`` feeds the statistic (a densify or prune step is still to come)."""
        return self.enabled and step <= max(self.densify_until, self.prune_until)


def _empty() -> Tensor:
    return torch.zeros(0)


@dataclass
class DensifyState:
    """Running statistics per Gaussian (all ``[N]``; created lazily by :func:`accumulate`).

    Attributes:
        grad_accum: sum over steps of the normalised gradient norm.
        count: steps in which the Gaussian was visible.
        max_radii: largest screen radius in pixels since the last densification.
    """

    grad_accum: Tensor = field(default_factory=_empty)
    count: Tensor = field(default_factory=_empty)
    max_radii: Tensor = field(default_factory=_empty)

    @classmethod
    def create(cls, n: int, device: str | torch.device = "cpu") -> DensifyState:
        """Zero statistics for ``n`` Gaussians."""
        z = torch.zeros(n, device=device)
        return cls(z.clone(), z.clone(), z.clone())

    @property
    def num_gaussians(self) -> int:
        return int(self.grad_accum.shape[0])

    def average_grad(self) -> Tensor:
        """``grad_accum / count`` (0 where never visible)."""
        return self.grad_accum / self.count.clamp(min=1)

    def restart(self, n: int, device: str | torch.device) -> None:
        """Zero statistics for ``n`` Gaussians (after a densification)."""
        fresh = DensifyState.create(n, device)
        self.grad_accum, self.count, self.max_radii = fresh.grad_accum, fresh.count, fresh.max_radii

    def _keep_rows(self, keep: Tensor, n_new: int = 0) -> None:
        """Keep the rows ``keep`` (``[N]`` bool), then append ``n_new`` zero rows, on ``keep``'s device."""
        for name in ("grad_accum", "count", "max_radii"):
            t = getattr(self, name).to(keep.device)
            setattr(self, name, torch.cat([t[keep], t.new_zeros(n_new)]))

    def _sized(self, n: int, device: str | torch.device) -> None:
        """Create zero statistics on first use; check ``n`` against the tracked Gaussians."""
        if self.num_gaussians == 0 and n > 0:
            self.restart(n, device)
        if self.num_gaussians != n:
            raise ValueError(
                f"state: tracks {self.num_gaussians} Gaussians, the Gaussians have N={n}; use the "
                "state updated by grow / prune with the current Gaussians"
            )


@dataclass
class DensifyInfo:
    """What one densification step did.

    Attributes:
        action: ``"none"`` (off the schedule), ``"densify"`` (grow and prune) or ``"prune"``.
        n_before: Gaussians before the step.
        n_cloned: Gaussians copied (small, high gradient).
        n_split: Gaussians replaced by ``split_factor`` children (large, high gradient).
        n_pruned: Gaussians removed (low opacity, too large on screen or in the world).
        n_rescued: Gaussians kept although pruned, the best of a triangle that would be empty.
        n_after: Gaussians after the step.
        n_candidates: Gaussians whose statistic reached the threshold (grown unless the budget
            bound).
        budget_bound: the budget ``max_gaussians`` left some candidates out.
    """

    action: Literal["none", "densify", "prune"] = "none"
    n_before: int = 0
    n_cloned: int = 0
    n_split: int = 0
    n_pruned: int = 0
    n_rescued: int = 0
    n_after: int = 0
    n_candidates: int = 0
    budget_bound: bool = False
