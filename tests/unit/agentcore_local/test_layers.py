"""agentcore_local's import graph: no cycles, and no package reaching into another's inner modules
(read from the source with ast, so the test sees imports inside functions too)."""

import ast
from pathlib import Path

import agentcore_local
from tests.support.import_graph import first_cycle

ROOT = Path(agentcore_local.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The agentcore_local modules `path` imports, resolved to dotted names."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("agentcore_local"):
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("agentcore_local")}
    return found - {here}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: imports(path) & MODULES.keys() for name, path in MODULES.items()}


def test_there_is_no_import_cycle() -> None:
    assert first_cycle(GRAPH) is None


def test_packages_are_entered_only_through_their_facade() -> None:
    def package_of(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or MODULES[name].name == "__init__.py" else ""

    reaches = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if package_of(target)
        and MODULES[target].name != "__init__.py"
        and package_of(target) != package_of(name)
    ]
    assert reaches == []
