"""What the layer tests share: the first import cycle in a graph of modules."""

from __future__ import annotations


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as the modules on it (the first repeated at the end), or None; depth first, sorted."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str] | None:
        if name in trail:
            return [*trail[trail.index(name) :], name]
        if name in done:
            return None
        for target in sorted(graph[name]):
            if cycle := visit(target, [*trail, name]):
                return cycle
        done.add(name)
        return None

    return next((cycle for name in sorted(graph) if (cycle := visit(name, []))), None)
