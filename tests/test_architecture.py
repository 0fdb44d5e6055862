"""The core stays platform-free: it imports no adapter, no slack_bolt, no discord."""

import ast

from tests.support import REPO

FORBIDDEN = ("bot.adapters", "slack_bolt", "slack_sdk", "discord", "aiohttp")


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_platform_code():
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in (REPO / "bot" / "core").glob("*.py")
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN)
    }
    assert not offenders


def test_core_modules_it_imports_are_platform_free_too():
    """Modules outside bot/core that the core pulls in must not bring platforms with them."""
    core_deps = {
        name
        for path in (REPO / "bot" / "core").glob("*.py")
        for name in imported_modules(path)
        if name.startswith("bot.") and not name.startswith("bot.core")
    }
    for module in core_deps:
        path = REPO / (module.replace(".", "/") + ".py")
        if path.exists():
            bad = [n for n in imported_modules(path) if n.startswith(FORBIDDEN)]
            assert not bad, f"{module} (imported by the core) imports {bad}"


def _module_name(path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _bot_modules() -> dict[str, set[str]]:
    """Every module under bot/ and the bot modules it imports (at any level, including
    imports inside functions; ``if TYPE_CHECKING:`` imports are not real imports)."""
    modules = {_module_name(p): p for p in (REPO / "bot").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for n in ast.walk(node))
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                # ``from pkg import submodule`` imports the submodule, not pkg's names
                targets = [t for t in subs if t in modules] or [node.module]
            else:
                continue
            # a module's own parent packages are initialised before it: not a cycle
            ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
            deps.update(t for t in targets if t in modules and t != name and t not in ancestors)
        graph[name] = deps
    return graph


def test_adapters_never_import_the_store():
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in (REPO / "bot" / "adapters").rglob("*.py")
        for name in imported_modules(path)
        if name.startswith("bot.storage")
    }
    assert not offenders


def test_no_import_cycle_among_bot_modules():
    graph = _bot_modules()
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append([*visiting[visiting.index(node) :], node])
            return
        visiting.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        visiting.pop()
        done.add(node)

    for module in sorted(graph):
        visit(module)
    assert not cycles, cycles


def test_adapters_the_scheduler_and_health_never_see_the_whole_runtime():
    """They get narrow ports (``bot.core.ports``), not ``bot.app.Runtime`` and its store."""
    paths = [
        *(REPO / "bot" / "adapters").rglob("*.py"),
        REPO / "bot" / "scheduling.py",
        REPO / "bot" / "health.py",
    ]
    offenders = {
        str(path.relative_to(REPO)) for path in paths if "bot.app" in imported_modules(path)
    }
    assert not offenders


def test_the_store_and_the_core_import_nothing_that_uses_them():
    """One direction: adapters and the top-level services over the core, the core over
    the store. The store imports no core module; the core imports nothing that imports
    the core (such as ``bot.privacy`` or ``bot.cli``), even inside a function."""
    graph = _bot_modules()
    uses_core = {m for m, deps in graph.items() if any(d.startswith("bot.core") for d in deps)}
    offenders = {
        f"{module} -> {dep}"
        for module, deps in graph.items()
        for dep in deps
        if (module.startswith("bot.storage") and dep.startswith("bot.core"))
        or (module.startswith("bot.core") and dep in uses_core and not dep.startswith("bot.core"))
    }
    assert not offenders
