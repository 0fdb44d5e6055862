"""YAML loading that remembers where every value came from.

Admins edit YAML by hand, so every problem we report must point at a line and column.
PyYAML keeps marks on its node graph; we walk that graph once to build plain Python
data plus a map from data paths (``("schedules", 0, "cron")``) to positions.

Whatever the bytes, loading ends in data or in ``ProblemsFound``, never in another
exception: control characters, deep nesting, recursive aliases and alias bombs
("billion laughs") are refused with a position before they can cost time or memory.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

log = logging.getLogger(__name__)

Loc = tuple[int | str, ...]

MAX_FILE_BYTES = 1024 * 1024  # a config is 1 KiB; a prompt set about 2 KiB per prompt
MAX_DEPTH = 64  # the deepest real value is 5 levels down
MAX_ALIASES = 1_000  # alias uses (``*name``) per file
MAX_NODES = 100_000  # values after expanding aliases: refuses "billion laughs" early
MAX_MESSAGE = 300  # characters of a problem message (values are quoted in messages)

_MERGE = "tag:yaml.org,2002:merge"
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a file, printable as ``path:line:col: message``."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        message = self.message
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        return f"{self.path}:{self.line}:{self.col}: {message}"


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
        for err in error.errors(include_url=False, include_input=False):
            loc = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
            kind = err["type"]
            if kind == "extra_forbidden" and loc:
                name = loc[-1]
                out.append(self.problem(loc, f"unknown key '{name}'", at_key=True))
                continue
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            where = ".".join(str(p) for p in loc) or "document"
            if kind == "missing" and loc:
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
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read file: {why}")]) from None
    except ValueError as exc:  # e.g. a NUL in the path
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read file: {exc}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES // (1024 * 1024)
        raise ProblemsFound([Problem(shown, 1, 1, f"file is larger than {limit} MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw[: exc.start].decode("utf-8", "replace"), None)
        raise ProblemsFound([Problem(shown, line, col, "file is not valid UTF-8")]) from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> SourceDoc:
    """Parse YAML text; any failure becomes ProblemsFound, never another exception."""
    doc = SourceDoc(shown, None)
    problems: list[Problem] = []
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader checks for control characters here
        node = loader.get_single_node()
        if node is not None:
            doc.data = _Walker(loader, doc, problems).walk(node, ())
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ProblemsFound(
            [
                Problem(
                    shown,
                    line,
                    col,
                    f"invalid YAML: control character U+{char:04X} is not allowed; delete it "
                    f'(inside double quotes it can be written "\\x{char:02x}")'
                    if char < 0x100
                    else f"invalid YAML: character U+{char:04X} is not allowed; delete it",
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        raise ProblemsFound([Problem(shown, line, col, f"invalid YAML: {what}")]) from None
    except _Refused as exc:
        raise ProblemsFound([Problem(shown, exc.line, exc.col, exc.message)]) from None
    except yaml.YAMLError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, f"invalid YAML: {exc}")]) from None
    except RecursionError:  # guarded by MAX_DEPTH; kept so no input can crash a caller
        raise ProblemsFound([Problem(shown, 1, 1, "invalid YAML: nested too deeply")]) from None
    except MemoryError:
        raise ProblemsFound([Problem(shown, 1, 1, "invalid YAML: too large to load")]) from None
    except Exception as exc:  # a PyYAML corner we have not met: still a problem, not a crash
        log.debug("unexpected error parsing %s", shown, exc_info=True)
        raise ProblemsFound(
            [Problem(shown, 1, 1, f"invalid YAML: cannot parse ({type(exc).__name__})")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if problems:
        raise ProblemsFound(problems)
    return doc


def _line_col(text: str, position: int | None) -> tuple[int, int]:
    """1-based line and column of a character offset (the end of ``text`` if None)."""
    before = text if position is None else text[:position]
    breaks = list(_LINE_BREAK.finditer(before))
    if not breaks:
        return 1, len(before) + 1
    return len(breaks) + 1, len(before) - breaks[-1].end() + 1


class _Refused(Exception):
    """Input we will not load (too deep, too many aliases, too big once expanded)."""

    def __init__(self, mark: yaml.Mark | None, message: str):
        super().__init__(message)
        self.line, self.col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses deep nesting, recursive and excessive aliases.

    PyYAML's composer recurses once per nesting level and shares aliased nodes, so a
    recursive alias builds a cyclic graph; both are stopped here, at the offending event.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._open_anchors: set[str] = set()
        self._aliases = 0

    def fetch_flow_collection_start(self, TokenClass) -> None:
        # checked in the scanner too: it looks ahead along a line of "[[[[…" before the
        # composer sees the events, and that look-ahead costs flow-level² time
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(self.get_mark(), f"invalid YAML: nested deeper than {MAX_DEPTH} levels")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise _Refused(
                    event.start_mark,
                    f"invalid YAML: recursive alias '*{event.anchor}' "
                    "(it refers to a value that contains itself)",
                )
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(
                    event.start_mark, f"invalid YAML: more than {MAX_ALIASES} aliases in one file"
                )
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _Refused(event.start_mark, f"invalid YAML: nested deeper than {MAX_DEPTH} levels")
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)


class _Walker:
    """Builds plain data from the node graph, recording positions as it goes.

    An aliased node is built once and shared (never expanded again), and the size it
    would have once expanded is counted, so an alias bomb stops at MAX_NODES.
    """

    def __init__(self, loader: _BoundedLoader, doc: SourceDoc, problems: list[Problem]):
        self.loader = loader
        self.doc = doc
        self.problems = problems
        self.built: dict[int, tuple[Any, int]] = {}  # id(node) -> (data, expanded size)
        self.sizes: dict[int, int] = {}  # id(container we built) -> expanded size
        self.busy: set[int] = set()

    def walk(self, node: yaml.Node, loc: Loc) -> Any:
        return self._node(node, loc)[0]

    def _problem(self, node: yaml.Node, message: str) -> None:
        line, col = _pos(node)
        self.problems.append(Problem(self.doc.path, line, col, message))

    def _node(self, node: yaml.Node, loc: Loc) -> tuple[Any, int]:
        self.doc.values[loc] = _pos(node)
        key = id(node)
        if key in self.built:
            return self.built[key]
        if key in self.busy:  # composer refuses these; a cycle here would never end
            raise _Refused(node.start_mark, "invalid YAML: recursive alias")
        self.busy.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                data, size = self._mapping(node, loc)
            elif isinstance(node, yaml.SequenceNode):
                items = [self._node(item, (*loc, i)) for i, item in enumerate(node.value)]
                data, size = [d for d, _ in items], 1 + sum(s for _, s in items)
            else:
                data, size = self._scalar(node), 1
        finally:
            self.busy.discard(key)
        if size > MAX_NODES:
            raise _Refused(
                node.start_mark,
                f"invalid YAML: more than {MAX_NODES} values once aliases are expanded",
            )
        self.built[key] = (data, size)
        if isinstance(data, dict | list):
            self.sizes[id(data)] = size
        return data, size

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        merged: dict[str, tuple[Any, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for source in self._merge_sources(value_node, loc):
                    for k, v in source.items():
                        merged.setdefault(k, (v, self._size_of(v)))
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in out:
                line, col = _pos(key_node)
                first = self.doc.keys[(*loc, key)]
                self.problems.append(
                    Problem(
                        self.doc.path,
                        line,
                        col,
                        f"duplicate key '{key}' (first at line {first[0]})",
                    )
                )
                continue
            self.doc.keys[(*loc, key)] = _pos(key_node)
            out[key], sizes[key] = self._node(value_node, (*loc, key))
        for k, (v, s) in merged.items():
            if k not in out:
                out[k], sizes[k] = v, s
        return out, 1 + sum(sizes.values())

    def _merge_sources(self, value_node: yaml.Node, loc: Loc) -> list[dict[str, Any]]:
        """The mappings a ``<<:`` key merges in, earliest first (earlier ones win)."""
        nodes = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        out = []
        for sub in nodes:
            if not isinstance(sub, yaml.MappingNode):
                self._problem(sub, "invalid YAML: '<<' merges a mapping or a list of mappings")
                continue
            data, _ = self._node(sub, (*loc, "<<"))
            out.append(data)
        return out

    def _size_of(self, value: Any) -> int:
        return self.sizes.get(id(value), 1) if isinstance(value, dict | list) else 1

    def _key(self, key_node: yaml.Node) -> str | None:
        if isinstance(key_node, yaml.ScalarNode):
            key = self._scalar(key_node)
            if isinstance(key, str | int | float | bool) and key is not None:
                return str(key)
        self._problem(key_node, "mapping keys must be plain text")
        return None

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, OverflowError, TypeError):
            # e.g. 2026-13-01 resolves as a date but is none, or a number too long to
            # convert: keep the text and let the schema say whether text is fine here
            return node.value if isinstance(node.value, str) else None
        if isinstance(value, str) and (bad := _CONTROL.search(value)):
            # "\0" or "\e" escapes: PostgreSQL cannot store a NUL, terminals obey ESC
            self._problem(
                node,
                f"invalid text: control character U+{ord(bad.group()):04X} (from an escape); "
                "remove it",
            )
            return None
        if isinstance(value, str) and _SURROGATE.search(value):
            # "\ud800" escapes make text no database or chat can store
            self._problem(
                node,
                "invalid text: an escape such as \\ud800 is only half a character; "
                "write the character itself",
            )
            return None
        return value


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
