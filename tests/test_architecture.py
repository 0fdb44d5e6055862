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
