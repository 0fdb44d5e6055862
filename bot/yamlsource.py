"""YAML loading that remembers where every value came from.

Admins edit YAML by hand, so every problem we report must point at a line and column.
PyYAML keeps marks on its node graph; we walk that graph once to build plain Python
data plus a map from data paths (``("schedules", 0, "cron")``) to positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[int | str, ...]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a file, printable as ``path:line:col: message``."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class ProblemsFound(Exception):
    """Raised with every problem found, so admins can fix them all in one go."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class SourceDoc:
    """Parsed YAML data with the positions of its values and mapping keys (1-based)."""

    path: str
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def problem(self, loc: Loc, message: str, *, at_key: bool = False) -> Problem:
        """A problem positioned at ``loc``, or at the closest enclosing value we know."""
        table = self.keys if at_key and loc in self.keys else self.values
        probe = tuple(loc)
        while probe and probe not in table:
            probe = probe[:-1]
            table = self.values
        line, col = table.get(probe, (1, 1))
        return Problem(self.path, line, col, message)

    def problems_from(self, error: ValidationError, prefix: Loc = ()) -> list[Problem]:
        """Turn pydantic's errors into positioned problems."""
        out = []
        for err in error.errors():
            loc = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
            kind = err["type"]
            if kind == "extra_forbidden":
                name = loc[-1]
                out.append(self.problem(loc, f"unknown key '{name}'", at_key=True))
                continue
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            where = ".".join(str(p) for p in loc) or "document"
            if kind == "missing":
                out.append(self.problem(loc[:-1], f"'{loc[-1]}' is required"))
            else:
                out.append(self.problem(loc, f"{where}: {msg}"))
        return out


def _is_union_tag(part: int | str) -> bool:
    # pydantic inserts the member type name for unions/function validators in the loc
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def load_yaml(path: Path, display_path: str | None = None) -> SourceDoc:
    """Parse one YAML file; raise ProblemsFound with positions for syntax errors."""
    shown = display_path or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, "file is not valid UTF-8")]) from exc
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> SourceDoc:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = SourceDoc(shown, None)
        problems: list[Problem] = []
        if node is not None:
            doc.data = _walk(loader, node, (), doc, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        raise ProblemsFound([Problem(shown, line, col, f"invalid YAML: {what}")]) from exc
    except yaml.YAMLError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    if problems:
        raise ProblemsFound(problems)
    return doc


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk(
    loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, doc: SourceDoc, problems: list[Problem]
) -> Any:
    doc.values[loc] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                line, col = _pos(key_node)
                problems.append(Problem(doc.path, line, col, "mapping keys must be plain text"))
                continue
            key = str(key)
            if key in out:
                line, col = _pos(key_node)
                first = doc.keys[(*loc, key)]
                problems.append(
                    Problem(
                        doc.path, line, col, f"duplicate key '{key}' (first at line {first[0]})"
                    )
                )
                continue
            doc.keys[(*loc, key)] = _pos(key_node)
            out[key] = _walk(loader, value_node, (*loc, key), doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, (*loc, i), doc, problems) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:  # a scalar that looks like a date but is none, e.g. 2026-13-01
        line, col = _pos(node)
        problems.append(Problem(doc.path, line, col, f"'{node.value}' is not a valid date ({exc})"))
        return None
