#!/usr/bin/env python3
"""Writes the licence texts of every crate linked into the wasmnode binary
for one target (the normal dependencies `cargo metadata` resolves for that
platform) and into the built-in guests it embeds (guests/, for
wasm32-wasip2, test guests left out), each under its name, version and
licence expression.

    scripts/third-party-licenses.py TARGET OUT_FILE

Fails when a crate ships no licence file and its expression is missing, so
a release never goes out with a dependency's terms unknown."""

import json
import pathlib
import subprocess
import sys

PREFIXES = ("license", "licence", "copying", "notice", "unlicense", "copyright")
# Crates that build a bundled C library whose own licence lies below the
# crate's root, where the scan above does not look.
BUNDLED = {"libmimalloc-sys": ["c_src/mimalloc/v3/LICENSE"]}


def linked(manifest: str, target: str, is_root) -> dict:
    """The packages reachable by normal dependencies from the roots."""
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--locked",
             "--manifest-path", manifest, "--filter-platform", target],
        )
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    todo = [i for i in meta["workspace_members"] if is_root(packages[i])]
    seen = set(todo)
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            normal = any(k["kind"] is None for k in dep["dep_kinds"])
            if normal and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    return {i: packages[i] for i in seen}


def main() -> int:
    target, out = sys.argv[1], pathlib.Path(sys.argv[2])
    root = pathlib.Path(__file__).resolve().parent.parent
    node = linked(str(root / "Cargo.toml"), target, lambda p: p["name"] == "wasmnode")
    guests = linked(
        str(root / "guests" / "Cargo.toml"), "wasm32-wasip2",
        lambda p: "/testing/" not in p["manifest_path"],
    )
    packages = {**node, **guests}
    sections, unknown = [], []
    for pid in sorted(packages, key=lambda i: (packages[i]["name"], packages[i]["version"])):
        p = packages[pid]
        if p["source"] is None:  # the workspace's own crates
            continue
        crate_dir = pathlib.Path(p["manifest_path"]).parent
        files = sorted(
            f for f in crate_dir.iterdir()
            if f.is_file() and f.name.lower().startswith(PREFIXES)
        ) + [crate_dir / path for path in BUNDLED.get(p["name"], [])]
        expression = p.get("license") or ""
        if not files and not expression:
            unknown.append(f'{p["name"]} {p["version"]}')
            continue
        text = [f'## {p["name"]} {p["version"]}', f"Licence: {expression or 'see below'}"]
        if p.get("repository"):
            text.append(f'Source: {p["repository"]}')
        for f in files:
            name = f.relative_to(crate_dir)
            text += ["", f"### {name}", "", f.read_text(errors="replace").strip()]
        if not files:
            text += ["", "(the crate ships no licence file; its terms are the licence above)"]
        sections.append("\n".join(text))
    if unknown:
        print("error: no licence known for: " + ", ".join(unknown), file=sys.stderr)
        return 1
    header = (
        f"Third-party software linked into wasmnode for {target}: "
        f"{len(sections)} crates, with their licence texts.\n"
    )
    out.write_text(header + "\n\n" + "\n\n".join(sections) + "\n")
    print(f"{out}: {len(sections)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
