"""The package's shape: four wings whose imports run one way, and no import circles.

http → kafka → fanout → wire: a wing may import the wings after it, never
one before it. The top-level modules tie the wings together (app, server,
workers, cli, metrics, demo) and may import anything; of them, only
``bridge.config`` (the settings every wing is configured with, importing
nothing of the package) may be imported by a wing. Imports under
``TYPE_CHECKING`` and inside functions count as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bridge

PACKAGE = Path(bridge.__file__).parent
WINGS = ("http", "kafka", "fanout", "wire")  # each may use those after it
SHARED = {"bridge.config"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The package's modules that ``name`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bridge"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.add(target if target in MODULES else node.module)
    return found - {name}


def wing(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in WINGS else None


def test_the_wings_exist_and_hold_modules() -> None:
    for name in WINGS:
        assert sum(1 for module in MODULES if wing(module) == name) >= 3, name


def test_a_wing_imports_only_the_wings_after_it() -> None:
    broken = []
    for name in MODULES:
        own = wing(name)
        if own is None:
            continue
        allowed = set(WINGS[WINGS.index(own) :])
        broken += [f"{name} imports {target}" for target in imports(name)
                   if target not in SHARED and wing(target) not in allowed]  # fmt: skip
    assert broken == []


def test_the_shared_settings_import_nothing_of_the_package() -> None:
    for name in SHARED:
        assert imports(name) <= {"bridge"}, name


def test_no_module_imports_itself_through_others() -> None:
    graph = {name: imports(name) - {"bridge"} for name in MODULES}
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            circles.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert circles == []
