"""The LBS benchmark script runs end to end (tiny settings) and reports a ratio against smplx."""

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
    ratios = re.findall(r"([0-9.]+)x", row)
    assert len(ratios) == 4 and all(float(r) > 0 for r in ratios)
    err = float(re.search(r"= ([0-9.e+-]+) m", row).group(1))
    assert err < 1e-5  # ours and smplx agree on the benchmarked model
