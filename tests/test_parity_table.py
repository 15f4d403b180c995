"""docs/METHOD.md's parity table (paper / public code / ours) and the configuration's defaults
cannot drift apart: every row whose first column is a config key states that key's default."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from headstudio.config import DensifyConfig, HeadStudioConfig, RegularizerConfig, config_to_dict

METHOD = Path(__file__).resolve().parents[1] / "docs" / "METHOD.md"
HEADING = "## Parity with the paper and the public code"
COLUMNS = ["key", "paper", "public code", "ours", "why ours"]
KEY = re.compile(r"^`([a-z_]+)\.([a-z_0-9.]+)`$")  # an embedded table's key: guidance.fsds.mode
VALUE = re.compile(r"^`([^`]+)`$")


def parity_rows(text: str) -> list[list[str]]:
    """The cells of the parity table's rows (header and rule left out)."""
    start = text.index(HEADING)
    lines = text[start:].splitlines()[1:]
    table = []
    for line in lines:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif table:
            break  # the table ended
    assert table, f"no table under '{HEADING}' in {METHOD}"
    assert table[0] == COLUMNS, table[0]
    assert all(set(c) <= set("- ") for c in table[1]), table[1]
    rows = table[2:]
    assert all(len(r) == len(COLUMNS) for r in rows), [r for r in rows if len(r) != len(COLUMNS)]
    return rows


def _same(doc: Any, default: Any) -> bool:
    if isinstance(default, list):
        return isinstance(doc, list) and len(doc) == len(default) and all(map(_same, doc, default))
    if isinstance(default, bool) or isinstance(default, str):
        return doc == default
    if isinstance(default, (int, float)):
        return (
            isinstance(doc, (int, float))
            and not isinstance(doc, bool)
            and math.isclose(doc, default, rel_tol=1e-12)
        )
    return doc == default


def mismatches(rows: list[list[str]], defaults: dict[str, dict[str, Any]]) -> list[str]:
    """One line per row whose config key is unknown or whose "ours" is not its default."""
    out = []
    for row in rows:
        key = KEY.match(row[0])
        if not key:
            continue
        section, name = key.groups()
        table: Any = defaults.get(section, {})
        *tables, last = name.split(".")
        for t in tables:
            table = table.get(t) if isinstance(table, dict) else None
        if not isinstance(table, dict) or last not in table or isinstance(table[last], dict):
            out.append(f"{section}.{name}: not a config key")
            continue
        default = table[last]
        value = VALUE.match(row[3])
        if not value:
            out.append(f"{section}.{name}: 'ours' must be one `TOML value`, got {row[3]!r}")
            continue
        doc = tomllib.loads(f"v = {value.group(1)}")["v"]
        if not _same(doc, default):
            out.append(f"{section}.{name}: METHOD.md says {doc!r}, the default is {default!r}")
    return out


def test_the_parity_table_states_every_default_it_names() -> None:
    rows = parity_rows(METHOD.read_text(encoding="utf-8"))
    assert mismatches(rows, config_to_dict(HeadStudioConfig())) == []


def test_the_parity_table_covers_what_issue_20_changed() -> None:
    keys = {
        ".".join(m.groups())
        for r in parity_rows(METHOD.read_text(encoding="utf-8"))
        if (m := KEY.match(r[0]))
    }
    required = {f"regularizer.{f.name}" for f in dataclasses.fields(RegularizerConfig)}
    required |= {f"densify.{f.name}" for f in dataclasses.fields(DensifyConfig) if f.name != "enabled"}
    required |= {
        "train.lr_position", "train.lr_position_final", "train.lr_position_decay_steps", "train.lr_scale",
        "train.lr_rotation", "train.lr_color", "train.lr_opacity", "train.lr_shape", "train.betas",
        "train.eps", "train.steps", "train.batch_size", "train.resolution", "train.shape_stop_step",
        "loss.lambda_pos", "loss.lambda_scale", "loss.lambda_sds", "init.points_per_face",
        "guidance.fsds.guidance_scale", "guidance.fsds.controlnet_scale", "guidance.fsds.t_range_phase1",
        "guidance.fsds.t_range_phase2", "guidance.fsds.t_switch_step", "guidance.fsds.denoise_switch_t",
    }  # fmt: skip
    assert required - keys == set()


def test_a_drifted_row_is_caught() -> None:
    defaults = config_to_dict(HeadStudioConfig())
    good = [
        ["`train.lr_scale`", "1e-3", "5e-3", "`5e-3`", "code"],
        ["`train.betas`", "", "", "`[0.9, 0.999]`", ""],
        ["`regularizer.form`", "", "", '`"code"`', ""],
        ["`guidance.fsds.guidance_scale`", "", "", "`7.5`", ""],
        ["split offset", "", "", "N(0, s²)", "not a key: skipped"],
    ]
    assert mismatches(good, defaults) == []
    drifted = [
        ["`train.lr_scale`", "", "", "`1e-3`", ""],
        ["`train.betas`", "", "", "`[0.9, 0.99]`", ""],
        ["`regularizer.form`", "", "", '`"paper"`', ""],
        ["`train.lr_scales`", "", "", "`1e-3`", ""],
        ["`densify.grad_threshold`", "", "", "0.001", ""],
        ["`guidance.fsds.guidance_scale`", "", "", "`7.0`", ""],
        ["`guidance.fsds`", "", "", "`7.5`", ""],
    ]
    found = mismatches(drifted, defaults)
    assert len(found) == 7, found
    assert "guidance.fsds: not a config key" in found[6]
    assert "train.lr_scale: METHOD.md says 0.001, the default is 0.005" in found[0]
    with pytest.raises(AssertionError):
        parity_rows("## Parity with the paper and the public code\n\n| a | b |\n| --- | --- |\n")
