"""No module outside ``headstudio.cli`` spells a command-line flag.

The rule (docs/ARCHITECTURE.md, "Commands and the CLI"):

- A message of a lower module names a command's option as ``«name»`` (the field of its Options,
  the ``dest`` of its flag) or ``«command:name»`` (an option of another command, e.g. the
  ``generate`` that restores a damaged avatar). The CLI prints each as its flag, from the
  command's own parser: one mapping, owned by ``cli/``.
- Docstrings and comments may mention the command line for the reader; they print nothing.
- A flag of another program inside backquotes (```espeak-ng --voices```, ```ray start --head```)
  is that program's, not ours.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import headstudio
from headstudio.cli import build_parser
from headstudio.cli._args import COMMAND_FLAGS
from headstudio.cli._report import ARGUMENT_FLAGS, MARK, render

ROOT = Path(headstudio.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
OTHER_PROGRAM = re.compile(r"`(?!headstudio\b)[^`]*`")


def _lower_modules() -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*.py")) if "cli" not in p.relative_to(ROOT).parts[:1]]


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _strings(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every string constant of ``path`` but its docstrings (f-strings: their
    literal parts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def test_the_scan_sees_modules_and_flags() -> None:
    modules = _lower_modules()
    assert len(modules) > 40 and not any(p.parent.name == "cli" for p in modules)
    assert FLAG.findall("give another --output or --resume-previous") == ["--output", "--resume-previous"]
    assert not FLAG.findall(OTHER_PROGRAM.sub("", "(`espeak-ng --voices` lists them)"))
    assert FLAG.findall(OTHER_PROGRAM.sub("", "run `headstudio generate P --output D`")) == ["--output"]


def test_no_module_outside_the_cli_spells_a_flag() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()[:90]!r}"
        for path in _lower_modules()
        for line, text in _strings(path)
        if FLAG.search(OTHER_PROGRAM.sub("", text))
    ]
    assert not found, "name the option as «name» and let the CLI print its flag:\n" + "\n".join(found)


def test_every_option_named_in_a_message_has_a_flag() -> None:
    build_parser()
    known = set(ARGUMENT_FLAGS).union(*COMMAND_FLAGS.values())
    bad = []
    for path in _lower_modules() + sorted((ROOT / "cli").glob("*.py")):
        for line, text in _strings(path):
            for command, name in MARK.findall(text):
                table = COMMAND_FLAGS.get(command, {}) if command else known
                if name not in table:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: «{command + ':' if command else ''}{name}»")
    assert not bad, "\n".join(bad)


def test_render_prints_the_running_commands_flags() -> None:
    build_parser()
    export = COMMAND_FLAGS["export"]
    text = "«format» web writes a folder; give «output» a folder name"
    assert render(text, export) == "--format web writes a folder; give -o a folder name"
    hint = "`headstudio generate P «generate:output» RUN «generate:resume_previous»`; «verify» reads it"
    assert (
        render(hint, export) == "`headstudio generate P --output RUN --resume-previous`; --no-verify reads it"
    )
    assert render("«overrides» train.steps=2", COMMAND_FLAGS["batch"]) == "--set train.steps=2"
    assert (
        render("«motion_out» 'x' must end in .npz", COMMAND_FLAGS["say"])
        == "--motion-out 'x' must end in .npz"
    )
