#!/usr/bin/env python3
"""Fails when the rooms of a crate import each other in a loop.

A room is a top-level module of a crate's `src/` (a file or a folder). Room A depends on room B
when A's code (tests aside) names `crate::B`. Usage: check_rooms.py SRC_DIR...
"""

import pathlib
import re
import sys


def dependencies(src: pathlib.Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for file in src.rglob("*.rs"):
        parts = file.relative_to(src).parts
        if parts[0] in ("lib.rs", "main.rs"):
            continue
        room = parts[0].removesuffix(".rs")
        code = file.read_text().split("#[cfg(test)]")[0]
        for other in re.findall(r"crate::([a-z_]+)", code):
            if other != room:
                graph.setdefault(room, set()).add(other)
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def main() -> int:
    loops = set()
    for src in map(pathlib.Path, sys.argv[1:]):
        graph = dependencies(src)
        for room, others in graph.items():
            for other in others:
                if room in reachable(graph, other):
                    loops.add(f"{src}: {min(room, other)} <-> {max(room, other)} (through their imports)")
    for loop in sorted(loops):
        print(f"import loop between rooms: {loop}", file=sys.stderr)
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main())
