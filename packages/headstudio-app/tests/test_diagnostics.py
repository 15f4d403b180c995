"""headstudio.train.diagnostics: the health figures of a record and the one-line warnings, each once."""

from __future__ import annotations

import logging

import pytest
import torch
from headstudio.train.diagnostics import (
    REG_RATIO_RANGE,
    SKIPPED_MIN_STEPS,
    RunMonitor,
    StepGradients,
    postfix,
    statistic_summary,
)
from rigged_gaussians.strategy import DensifyConfig, DensifyInfo, DensifyState


def _state(avg: list[float], counts: list[int]) -> DensifyState:
    st = DensifyState.create(len(avg))
    st.count = torch.tensor(counts, dtype=torch.float32)
    st.grad_accum = torch.tensor(avg) * st.count
    return st


def _warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return [m for m in msgs if needle in m]


def test_statistic_summary_over_the_seen_gaussians() -> None:
    st = _state([0.1, 0.3, 0.0, 0.2, 0.9], [1, 2, 0, 1, 3])  # the third was never seen
    s = statistic_summary(st)
    assert s["stat_mean"] == pytest.approx(0.375) and s["stat_p50"] == pytest.approx(0.3)
    assert s["stat_p99"] == pytest.approx(0.9)
    assert statistic_summary(DensifyState.create(3)) == {"stat_mean": 0.0, "stat_p50": 0.0, "stat_p99": 0.0}


def test_step_gradients_split_the_regulariser_from_the_guidance() -> None:
    reg = torch.tensor([[3.0, 0.0, 0.0]])
    g = StepGradients.split(reg + torch.tensor([[0.0, 4.0, 0.0]]), reg)
    assert (g.guidance, g.regularizer, g.ratio) == (4.0, 3.0, 0.75)
    # a term that is off this step (weight 0, or the position term before regularizer.pos_from)
    # has no ratio (issue 20: it was 0.0, which the range check read as "below the sane range")
    off = StepGradients.split(torch.ones(1, 3), None)
    assert off.ratio is None and "reg_ratio" not in off.logs()
    assert StepGradients(0.0, 1.0).ratio == float("inf")
    # the scale term on the log-scales: guidance [0, 0, 12] + scale term [5, 0, 0] -> 5 / 12
    reg_s = torch.tensor([[5.0, 0.0, 0.0]])
    gs = StepGradients.split(
        reg + torch.tensor([[0.0, 4.0, 0.0]]), reg, reg_s + torch.tensor([[0, 0, 12.0]]), reg_s
    )
    assert (gs.guidance_scale, gs.regularizer_scale) == (12.0, 5.0)
    assert gs.scale_ratio == pytest.approx(5 / 12)
    assert gs.logs() == {
        "grad_guidance": 4.0,
        "reg_ratio": 0.75,
        "grad_guidance_scale": 12.0,
        "scale_ratio": pytest.approx(5 / 12),
    }
    assert StepGradients.split(torch.ones(1, 3), reg, torch.ones(1, 3), None).scale_ratio is None


def test_records_average_each_ratio_over_the_steps_that_have_it() -> None:
    mon = RunMonitor(DensifyConfig(), torch.device("cpu"))
    mon.end_step(StepGradients(1.0, None, 2.0, 1.0), None)  # position term still off
    mon.end_step(StepGradients(3.0, 6.0, 4.0, 4.0), None)
    rec = mon.record(_state([0.1], [1]), 1, 2, 0)
    assert rec["grad_guidance"] == 2.0 and rec["grad_guidance_scale"] == 3.0
    assert rec["reg_ratio"] == 2.0  # only the second step had a position term
    assert rec["scale_ratio"] == pytest.approx((0.5 + 1.0) / 2)
    bar = postfix(rec, 1.0)
    assert bar["reg"] == "2" and bar["sreg"] == "0.75"
    mon.end_step(StepGradients(1.0, None, 1.0, None), None)
    rec = mon.record(_state([0.1], [1]), 1, 3, 0)
    assert "reg_ratio" not in rec and "scale_ratio" not in rec and "reg" not in postfix(rec, 1.0)


def test_records_window_and_warnings_fire_once(caplog: pytest.LogCaptureFixture) -> None:
    mon = RunMonitor(DensifyConfig(max_gaussians=100), torch.device("cpu"))
    lo, hi = REG_RATIO_RANGE
    st = _state([0.1, 0.2], [1, 1])
    with caplog.at_level(logging.WARNING, logger="headstudio.train.trainer"):
        for step in range(1, 4):
            mon.start_step()
            info = DensifyInfo(action="densify", n_cloned=2, n_split=1, n_pruned=3) if step == 2 else None
            mon.end_step(StepGradients(1.0, 10 * hi), info)
            rec = mon.record(st, 50, step, 0)
        assert rec["reg_ratio"] == pytest.approx(10 * hi) and rec["n_cloned"] == 0  # the window restarted
        assert len(_warnings(caplog, "above the sane range")) == 1
        # a ratio below the range is another warning, also once
        for step in (4, 5):
            mon.end_step(StepGradients(1.0, lo / 10), None)
            mon.record(st, 50, step, 0)
        assert len(_warnings(caplog, "sane range")) == 1  # one warning for the ratio per run
        # N past 80 % of the budget
        mon.record(st, 81, 6, 0)
        mon.record(st, 95, 7, 0)
        assert len(_warnings(caplog, "passed 80% of the budget")) == 1
        # skipped steps: not before SKIPPED_MIN_STEPS, then once past 5 %
        mon.record(st, 50, SKIPPED_MIN_STEPS - 1, 5)
        assert not _warnings(caplog, "were skipped")
        mon.record(st, 50, 100, 6)
        mon.record(st, 50, 200, 30)
        assert len(_warnings(caplog, "were skipped")) == 1
    assert all(len(r.getMessage().splitlines()) == 1 for r in caplog.records)


def test_densification_counts_and_progress_bar_fields() -> None:
    mon = RunMonitor(DensifyConfig(), torch.device("cpu"), regularized=False)
    mon.start_step()
    mon.end_step(StepGradients(2.0, 0.0), DensifyInfo(action="densify", n_cloned=2, n_split=1, n_pruned=3))
    mon.end_step(None, DensifyInfo(action="prune", n_pruned=4))
    rec = mon.record(_state([0.1], [1]), 7, 2, 1)
    assert (rec["n_cloned"], rec["n_split"], rec["n_pruned"], rec["n_skipped"]) == (2, 1, 7, 1)
    assert rec["grad_guidance"] == 2.0 and rec["ms_per_step"] >= 0 and "peak_cuda_gib" not in rec
    bar = postfix(rec, 0.5)
    assert bar["N"] == "7" and bar["c/s/p"] == "2/1/7" and bar["g"] == "2"
