"""Every module imports on its own: no import circle waits for whichever module happens to be first."""

import importlib
import pkgutil
import sys

import pytest

import encluster

MODULES = sorted(m.name for m in pkgutil.walk_packages(encluster.__path__, "encluster.") if m.name != "encluster.__main__")


def test_the_package_has_the_modules_it_is_known_to_have():
    assert {"encluster.estimator", "encluster.stages.embed", "encluster.presets", "encluster.dataset"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_first(name):
    """With every encluster module forgotten, `name` is the first one imported (its dependencies,
    torch and the rest, stay loaded: they are not ours to check)."""
    saved = {k: v for k, v in sys.modules.items() if k == "encluster" or k.startswith("encluster.")}
    for key in saved:
        del sys.modules[key]
    try:
        module = importlib.import_module(name)
        assert module.__name__ == name
    finally:
        for key in [k for k in sys.modules if k == "encluster" or k.startswith("encluster.")]:
            del sys.modules[key]
        sys.modules.update(saved)


def _imports(name):
    """The encluster modules `name` imports, at its top or inside a function alike."""
    import ast

    spec = importlib.util.find_spec(name)
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def test_no_module_imports_one_that_imports_it_back():
    """The import graph, a module's function-level imports included, has no cycle: a circle that a
    function-level import hides today breaks as soon as someone moves that import to the top."""
    graph = {name: _imports(name) for name in MODULES}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", "import circle: " + " -> ".join(path[path.index(name):] + [name])
        state[name] = "open"
        for other in sorted(graph[name]):
            visit(other, path + [name])
        state[name] = "done"

    for name in MODULES:
        visit(name, [])
