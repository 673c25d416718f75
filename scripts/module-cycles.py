#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a cycle.

Each file is a module (`store/mod.rs` is `store`, `agent/splai.rs` is
`agent::splai`). A path written in a module (`crate::…`, `super::…`,
`self::…`, or a child declared with `mod`) is an edge to the longest module
it names. A child using what its ancestors define is containment, not an
import, so those edges are left out; every other edge counts, and a cycle
is a module reaching itself through them. Usage: module-cycles.py SRC...
"""
import pathlib
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH = re.compile(rf"\b(crate|super|self)((?:::{IDENT})*)(::\{{([^{{}}]*(?:\{{[^{{}}]*\}}[^{{}}]*)*)\}})?")
CHILD = re.compile(rf"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*;", re.M)
COMMENT = re.compile(r"//.*")


def module_of(src: pathlib.Path, file: pathlib.Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def expand(group: str) -> list:
    out, depth, current = [], 0, ""
    for ch in group:
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current += ch
    out.append(current)
    return [p.strip().split("::{")[0].split(" as ")[0] for p in out if p.strip()]


def resolve(here: tuple, is_dir: bool, head: str, rest: list) -> tuple:
    if head == "crate":
        base = ()
    else:
        base = here if is_dir else here[:-1]
        if head == "super":
            base = base[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
    return base + tuple(r for r in rest if r != "self")


def graph(src: pathlib.Path) -> dict:
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    modules = set(files)
    edges = {m: set() for m in modules}

    def longest(path: tuple):
        for n in range(len(path), -1, -1):
            if path[:n] in modules:
                return path[:n]
        return None

    for here, file in files.items():
        is_dir = file.name in ("mod.rs", "lib.rs", "main.rs")
        text = COMMENT.sub("", file.read_text())
        targets = []
        for head, tail, _, group in PATH.findall(text):
            rest = [p for p in tail.split("::") if p]
            for item in expand(group) if group else [""]:
                extra = [p for p in item.split("::") if p and p != "self"]
                targets.append(resolve(here, is_dir, head, rest + extra))
        base = here if is_dir else here[:-1]
        for child in CHILD.findall(text):
            for use in re.findall(rf"\b{child}::", text):
                targets.append(base + (child,))
        for target in targets:
            found = longest(target)
            if found is None or found == here or here[: len(found)] == found:
                continue
            edges[here].add(found)
    return edges


def cycles(edges: dict) -> list:
    found, index, low, stack, on = [], {}, {}, [], set()

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def name(module: tuple) -> str:
    return "::".join(module) or "crate"


def main() -> int:
    failed = False
    for src in map(pathlib.Path, sys.argv[1:]):
        edges = graph(src)
        for component in cycles(edges):
            failed = True
            links = [
                f"{name(a)} -> {name(b)}"
                for a in component
                for b in sorted(edges[a])
                if b in component
            ]
            print(f"{src}: import cycle: {'; '.join(links)}")
    if not failed:
        print(f"no import cycles among the modules of {' '.join(sys.argv[1:])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
