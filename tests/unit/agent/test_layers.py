"""agent's import graph: no cycles, and every package depends only on the layers below it (read
from the source with ast, so the test sees imports inside functions and under TYPE_CHECKING too)."""

import ast
from pathlib import Path

import agent
from tests.support.import_graph import first_cycle

ROOT = Path(agent.__file__).parent
# Lowest first: a package may import the ones before it, never the ones after. Two leaf modules
# come first: session_files (FileSessionManager's layout) and rehearsal (shared by model/, backup/).
LAYERS = ("session_files", "rehearsal", "model", "tools", "conversation", "checkpoints", "backup", "service")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The agent modules `path` imports, resolved to dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("agent"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == "agent" or a.name.startswith("agent.")}
    return found - {module_name(path)}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: imports(path) & MODULES.keys() for name, path in MODULES.items()}


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_layer() -> None:
    assert {layer_of(name) for name in MODULES} - {None} == set(LAYERS)


def test_there_is_no_import_cycle() -> None:
    assert first_cycle(GRAPH) is None


def test_dependencies_point_down_the_layers_only() -> None:
    def rank(name: str) -> int:
        return LAYERS.index(layer_of(name))  # type: ignore[arg-type]

    upward = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if layer_of(name) and layer_of(target) and rank(target) > rank(name)
    ]
    assert upward == []


def test_the_graph_is_read_from_the_source_and_a_cycle_would_be_found() -> None:
    """Guards the test itself: it sees the imports the layers rest on, and it finds a cycle."""
    assert first_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert "agent.checkpoints.store" in GRAPH["agent.backup.files"]
    assert "agent.rehearsal" in GRAPH["agent.model.providers"]  # an import inside a function
