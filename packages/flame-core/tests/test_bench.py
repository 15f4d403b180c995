"""The LBS benchmark script runs end to end (tiny settings) and reports smplx / ours: each row's
ratio is the ratio of the two times it prints, the right way round."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_flame.py"


@pytest.mark.skipif(not BENCH.is_file(), reason="benchmarks/ is not part of this checkout")
def test_bench_flame_smoke(capsys):
    pytest.importorskip("smplx")
    spec = importlib.util.spec_from_file_location("bench_flame", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--batches", "2", "--repeats", "1", "--threads", "1", "--backward"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split() and line.split()[0] == "2")
    cells = row.split()
    # batch, smplx ms, ours ms, ratio, best, then the same four for forward + backward
    fwd_ref, fwd_ours, fwd_ratio, fwd_best = _floats(cells[1:5])
    fb_ref, fb_ours, fb_ratio, _ = _floats(cells[5:9])
    _assert_ratio_of(fwd_ratio, fwd_ref, fwd_ours)
    _assert_ratio_of(fb_ratio, fb_ref, fb_ours)
    # one repeat: the median of each side is its fastest run, so "best" is the same ratio
    assert fwd_best == fwd_ratio
    err = float(re.search(r"= ([0-9.e+-]+) m", row).group(1))
    assert err < 1e-5  # ours and smplx agree on the benchmarked model


def _floats(cells: list[str]) -> list[float]:
    return [float(c.rstrip("x")) for c in cells]


def _assert_ratio_of(ratio: float, ref_ms: float, ours_ms: float) -> None:
    """``ratio`` (printed to 0.01) is ``ref_ms / ours_ms`` (each printed to 0.01 ms): smplx over
    ours, not the inverse."""
    assert ref_ms > 0 and ours_ms > 0
    lo = (ref_ms - 0.005) / (ours_ms + 0.005) - 0.005
    hi = (ref_ms + 0.005) / max(ours_ms - 0.005, 1e-9) + 0.005
    assert lo <= ratio <= hi, (ratio, ref_ms, ours_ms)
