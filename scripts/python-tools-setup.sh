#!/usr/bin/env bash
# Prepares componentize-py for the Python plugin tests (`make test-python`):
# a virtualenv holding componentize-py from PyPI, made once per machine under
# $WASMNODE_PY_TOOLS_CACHE (default ~/.cache/wasmnode/componentize-py-VERSION).
# Prints the path of the componentize-py program.
set -euo pipefail
version=0.25.1
root=${WASMNODE_PY_TOOLS_CACHE:-$HOME/.cache/wasmnode/componentize-py-$version}
if ! "$root/bin/componentize-py" --version >/dev/null 2>&1; then
  echo "[python-tools] installing componentize-py $version into $root (once per machine)" >&2
  rm -rf "$root"
  python3 -m venv "$root"
  "$root/bin/pip" install --quiet "componentize-py==$version" >&2
fi
echo "$root/bin/componentize-py"
