"""The package's layering: every module imports alone, only the public wiring imports ``Monitor``, no import circle.

The static checks read every ``import`` statement of the package with :mod:`ast`, wherever it is (module level,
inside functions, under ``if TYPE_CHECKING:``): a circle that only type checkers or a lazy import follow is still a
circle for the next maintainer.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import llm_monitor_mw

PACKAGE = "llm_monitor_mw"
ROOT = Path(llm_monitor_mw.__file__).parent

ALLOWED_MONITOR_IMPORTERS = {
    f"{PACKAGE}",  # the public names
    f"{PACKAGE}.monitor",  # where it is defined
    # The demo is a host app that uses the package as a user would (``Monitor``'s public API only); nothing in the
    # package imports the demo but the CLI's ``demo`` command.
    f"{PACKAGE}.demo",
    f"{PACKAGE}.demo.main",
    # ``llm-monitor proxy`` is such a host too: it builds the Monitor its forwarding app records through.
    f"{PACKAGE}.cli.proxy",
}
OPTIONAL = {f"{PACKAGE}.otel": "opentelemetry", f"{PACKAGE}.store.engine.postgres": "psycopg"}
"""Modules that need an optional extra, and the distribution that extra brings."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement of ``importer`` names (``from x import y`` names ``x.y`` when ``y``
    is a module, else ``x``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if node.level:
        base = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return []
    names = [f"{target}.{alias.name}" for alias in node.names]
    modules = [name for name in names if name in MODULES]
    if len(modules) < len(names):  # at least one name is an attribute of ``target`` itself
        modules.append(target)
    return modules


def imports() -> dict[str, list[tuple[str, ast.Import | ast.ImportFrom]]]:
    """Per package module, the package modules it imports, each with its statement."""
    graph: dict[str, list[tuple[str, ast.Import | ast.ImportFrom]]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = [
            (target, node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for target in resolve(name, node)
            if target in MODULES and target != name
        ]
    return graph


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_module_list_is_read() -> None:
    # guards the checks below against passing on an empty package
    assert {f"{PACKAGE}.monitor", f"{PACKAGE}.web.app", f"{PACKAGE}.store", f"{PACKAGE}.hooks"} <= set(MODULES)
    assert len(MODULES) > 50


def test_resolve_follows_relative_imports() -> None:
    node = ast.parse("from ..store import Store, writer").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert sorted(resolve(f"{PACKAGE}.web.app", node)) == [f"{PACKAGE}.store", f"{PACKAGE}.store.writer"]
    node = ast.parse("from . import charts").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert resolve(f"{PACKAGE}.web", node) == [f"{PACKAGE}.web.charts"]


def test_cycle_detection_reports_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_only_the_wiring_imports_monitor() -> None:
    offenders = []
    for importer, found in imports().items():
        if importer in ALLOWED_MONITOR_IMPORTERS:
            continue
        for target, node in found:
            names = {alias.name for alias in node.names}
            if target == f"{PACKAGE}.monitor" or (target == PACKAGE and "Monitor" in names):
                offenders.append(f"{importer} (line {node.lineno})")
    assert offenders == [], "these modules import Monitor; give them the Store/Hooks they use instead"


def test_no_import_cycle() -> None:
    graph = imports()
    edges = {name: {target for target, _ in found} for name, found in graph.items()}
    found = cycles(edges)
    assert found == [], "import circles among package modules:\n" + "\n".join(" <-> ".join(c) for c in found)


IMPORT_ALONE = """
import importlib, json, os, sys, traceback

def in_child(work):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a process in which no module of the package is loaded yet
        os.close(read)
        try:
            out, code = work(), 0
        except BaseException:
            out, code = traceback.format_exc()[-4000:], 1
        with os.fdopen(write, "w") as pipe:
            pipe.write(out)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    _, status = os.waitpid(pid, 0)
    return status, out

modules = json.loads(sys.argv[1])
package = sys.argv[2]

def dependencies():
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException:
            pass
    return json.dumps([m for m in sys.modules if m.split(".")[0] != package])

# Preload what the package imports from elsewhere (stdlib, third-party): it is most of each import's time, and
# nothing of the package itself is loaded before each child forks.
_, found = in_child(dependencies)
for dependency in json.loads(found or "[]"):
    try:
        importlib.import_module(dependency)
    except BaseException:
        pass
assert not any(m.split(".")[0] == package for m in sys.modules), "the package leaked into the parent"
failures = {}
for module in modules:
    status, error = in_child(lambda: importlib.import_module(module) and "")
    if status != 0:
        failures[module] = error or f"exit status {status}"
print(json.dumps(failures))
"""


def test_every_module_imports_alone() -> None:
    modules = []
    for name in sorted(MODULES):
        extra = OPTIONAL.get(name)
        if name.endswith(".__main__") or (extra is not None and importlib.util.find_spec(extra) is None):
            continue  # a __main__ runs its program when imported; its package is imported alone instead
        modules.append(name)
    assert len(modules) > 50
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALONE, json.dumps(modules), PACKAGE],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n\n".join(f"import {m} failed:\n{e}" for m, e in failures.items())


def test_a_module_that_cannot_import_alone_is_reported(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALONE, json.dumps(["json", "no_such_module_here"]), PACKAGE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(failures) == ["no_such_module_here"] and "ModuleNotFoundError" in failures["no_such_module_here"]
