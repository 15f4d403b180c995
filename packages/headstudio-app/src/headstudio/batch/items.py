"""The prompts file of ``headstudio batch``: one item per prompt, each with its own folder name.

Three formats, told apart by the suffix:

- anything but ``.jsonl`` / ``.toml`` (``prompts.txt``): one prompt per line;
- ``.jsonl``: one JSON object per line, ``{"prompt": "...", "seed": 3, "steps": 2000,
  "flame": "heads/generic_model.pkl", "motion": "talk.npz", "name": "kratos",
  "set": {"train.lr_color": 0.01}}`` (``prompt`` or ``image`` is required: ``image`` makes the
  avatar of the person in that photograph, restyled by the prompt when there is one);
- ``.toml``: the same fields in ``[[item]]`` tables.

Blank lines and lines whose first character is ``#`` are skipped (``.txt`` and ``.jsonl``).
``seed``, ``steps``, ``flame`` and ``motion`` are ``train.seed``, ``train.steps``,
``head.flame_path`` and ``train.motion_path``; ``set`` holds any other configuration keys (a
table, or a list of ``"key=value"`` strings). Relative ``flame`` / ``motion`` / ``image`` paths are
read from the prompts file's folder.

Each item's folder is ``name`` when given, else the slug of its prompt; when slugs collide the
first item (in file order) keeps the slug and the next ones get ``-2``, ``-3``, ... (names given
explicitly are never renamed). The same file therefore always gives the same folders.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from ..errors import HeadStudioError, require_file

__all__ = ["BatchItem", "ITEM_FIELDS", "read_items", "slugify", "assign_names"]

#: The per-item fields that stand for one configuration key.
FIELD_KEYS = {
    "seed": "train.seed",
    "steps": "train.steps",
    "flame": "head.flame_path",
    "motion": "train.motion_path",
}
#: Every field an item may have.
ITEM_FIELDS = ("prompt", "image", "name", *FIELD_KEYS, "set")
#: Longest slug of a prompt (the folder name), in characters.
SLUG_LENGTH = 48
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_JSONL_EXAMPLE = 'each line is an object like {"prompt": "a DSLR portrait of Kratos", "seed": 1}'


@dataclass(frozen=True)
class BatchItem:
    """One avatar of a batch.

    Attributes:
        index: 1-based position in the file (the line of a text / JSONL file, the ``[[item]]``
            number of a TOML file).
        where: how messages name it (``"prompts.txt line 3"``).
        prompt: the text prompt.
        name: its folder under the batch's output directory.
        overrides: ``key=value`` configuration overrides of this item (after the batch's own).
        image: a photograph to build the avatar of (``generate``'s «image»), or ``None``.
    """

    index: int
    where: str
    prompt: str
    name: str
    overrides: tuple[str, ...] = ()
    image: Path | None = None


@dataclass(frozen=True)
class _Entry:
    index: int
    where: str
    prompt: str
    name: str | None
    overrides: tuple[str, ...]
    image: Path | None = None


def slugify(text: str, max_len: int = SLUG_LENGTH) -> str:
    """``"A DSLR portrait of Kratos!"`` → ``"a-dslr-portrait-of-kratos"`` (``"avatar"`` if empty)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "avatar"


def read_items(path: str | Path) -> list[BatchItem]:
    """Read a prompts file (module docstring) into named items, in file order.

    Raises:
        HeadStudioError: a missing file, a file without prompts, a malformed line or entry
            (named by its line / entry number), a name used twice, or an item repeated exactly.
    """
    p = require_file(path, "prompts file")
    suffix = p.suffix.lower()
    if suffix == ".toml":
        entries = list(_toml_entries(p))
    else:
        entries = list(_line_entries(p, jsonl=suffix == ".jsonl"))
    if not entries:
        raise HeadStudioError(
            f"prompts file '{p}' holds no prompt (only blank lines and # comments); "
            + (
                "add [[item]] tables with prompt = '...'."
                if suffix == ".toml"
                else "put one prompt per line."
            )
        )
    _refuse_repeats(entries)
    return assign_names(entries)


def assign_names(entries: list[_Entry]) -> list[BatchItem]:
    """Give every entry its folder name: its own ``name``, else its prompt's slug made unique."""
    taken: dict[str, str] = {}
    for e in entries:
        if e.name is not None:
            if e.name in taken:
                raise HeadStudioError(
                    f"{e.where}: name '{e.name}' is also used by {taken[e.name]}; names must differ."
                )
            taken[e.name] = e.where
    items = []
    for e in entries:
        name = e.name
        if name is None:
            base = slugify(e.prompt if e.prompt or e.image is None else e.image.stem)
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}-{k}"
            taken[name] = e.where
        items.append(BatchItem(e.index, e.where, e.prompt, name, e.overrides, e.image))
    return items


def _refuse_repeats(entries: list[_Entry]) -> None:
    """An unnamed entry that repeats an earlier one (same prompt and settings) is a mistake; one
    given its own ``name`` is asked for on purpose (e.g. the same avatar on two heads' folders)."""
    seen: dict[tuple[str, tuple[str, ...]], str] = {}
    for e in entries:
        key = (e.prompt, e.overrides)
        if key in seen and e.name is None:
            raise HeadStudioError(
                f"{e.where} repeats {seen[key]} (same prompt and settings: the same avatar twice); remove it "
                "or give it another seed."
            )
        seen[key] = e.where


# ------------------------------------------------------------------------------ formats


def _line_entries(path: Path, jsonl: bool) -> Iterator[_Entry]:
    data = path.read_bytes()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path.name} line {number}"
        try:
            line = raw.decode("utf-8").removeprefix("\ufeff").strip()
        except UnicodeDecodeError:
            raise HeadStudioError(f"{where} is not UTF-8 text; save the prompts file as UTF-8.") from None
        if not line or line.startswith("#"):
            continue
        if not jsonl:
            _check_text(line, where, "the prompt")
            yield _Entry(number, where, line, None, ())
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise HeadStudioError(
                f"{where} is not valid JSON ({err.msg} at column {err.colno}); {_JSONL_EXAMPLE}."
            ) from None
        if not isinstance(obj, dict):
            raise HeadStudioError(f"{where} is a JSON {type(obj).__name__}, not an object; {_JSONL_EXAMPLE}.")
        yield _entry(obj, number, where, path.parent)


def _toml_entries(path: Path) -> Iterator[_Entry]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise HeadStudioError(f"prompts file '{path}' is not valid TOML: {err}.") from None
    other = sorted(set(doc) - {"item"})
    if other:
        raise HeadStudioError(
            f"prompts file '{path}': unknown top-level key(s) {', '.join(other)}; write one [[item]] table "
            "per avatar, with prompt = '...'."
        )
    tables = doc.get("item", [])
    if not isinstance(tables, list):
        raise HeadStudioError(f"prompts file '{path}': 'item' must be [[item]] tables, one per avatar.")
    for number, obj in enumerate(tables, start=1):
        yield _entry(obj, number, f"{path.name} [[item]] {number}", path.parent)


def _entry(obj: Mapping[str, Any], number: int, where: str, base: Path) -> _Entry:
    """One JSONL object or TOML table → an entry (fields checked, overrides formatted)."""
    unknown = sorted(set(obj) - set(ITEM_FIELDS))
    if unknown:
        raise HeadStudioError(
            f"{where}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(ITEM_FIELDS)}."
        )
    image = None
    if "image" in obj:
        raw = obj["image"]
        if not isinstance(raw, str) or not raw.strip():
            raise HeadStudioError(f"{where}: image must be a file path (a string), got {raw!r}.")
        p = Path(raw).expanduser()
        image = require_file(p if p.is_absolute() else base / p, f"{where}: photo")
    prompt = obj.get("prompt", "" if image is not None else None)
    if not isinstance(prompt, str) or (not prompt.strip() and image is None):
        raise HeadStudioError(f'{where}: no prompt; give "prompt" as a non-empty string (or an "image").')
    prompt = prompt.strip()
    if prompt:
        _check_text(prompt, where, "the prompt")
    name = obj.get("name")
    if name is not None and (not isinstance(name, str) or _NAME.fullmatch(name) is None):
        raise HeadStudioError(
            f"{where}: name {name!r} is not a folder name of lower-case letters, digits and '-' (at most 64, "
            "starting with a letter or digit)."
        )
    overrides = []
    for field, key in FIELD_KEYS.items():
        if field in obj:
            overrides.append(f"{key}={_field_value(field, obj[field], where, base)}")
    overrides.extend(_set_overrides(obj.get("set", {}), where))
    return _Entry(number, where, prompt, name, tuple(overrides), image)


def _field_value(field: str, value: Any, where: str, base: Path) -> str:
    if field in ("seed", "steps"):
        low = 0 if field == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise HeadStudioError(f"{where}: {field} must be an integer >= {low}, got {value!r}.")
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise HeadStudioError(f"{where}: {field} must be a file path (a string), got {value!r}.")
    p = Path(value).expanduser()
    return toml_value(str(p if p.is_absolute() else base / p))


def _set_overrides(value: Any, where: str) -> list[str]:
    """``set`` as a table (nested tables are dotted keys) or a list of ``"key=value"``."""
    if isinstance(value, list):
        bad = [v for v in value if not isinstance(v, str) or "=" not in v]
        if bad:
            raise HeadStudioError(f'{where}: set entries must be "key=value" strings, got {bad[0]!r}.')
        return list(value)
    if not isinstance(value, Mapping):
        raise HeadStudioError(f"{where}: set must be a table of key = value, got {value!r}.")
    out = []
    for key, v in _flatten(value):
        try:
            out.append(f"{key}={toml_value(v)}")
        except TypeError as err:
            raise HeadStudioError(f"{where}: set {key}: {err}.") from None
    return out


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in table.items():
        if isinstance(v, Mapping):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def toml_value(v: Any) -> str:
    """A Python value as the TOML text ``--set key=TEXT`` reads back to it.

    Raises:
        TypeError: a value TOML cannot hold as a configuration value (``None``, a table, ...).
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"{v!r} is not a number, string, boolean or list")


def _check_text(text: str, where: str, what: str) -> None:
    bad = next((c for c in text if (ord(c) < 32 and c != "\t") or ord(c) == 127), None)
    if bad is not None:
        raise HeadStudioError(f"{where}: {what} holds the control character {bad!r}; remove it.")
