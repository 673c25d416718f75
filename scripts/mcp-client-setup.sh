#!/usr/bin/env bash
# Prepares the official MCP Python SDK for the MCP tests (`make test-mcp`): a
# virtualenv holding `mcp` from PyPI, made once per machine under
# $WASMNODE_MCP_CACHE (default ~/.cache/wasmnode/mcp-VERSION). Prints the
# path of its python.
set -euo pipefail
version=2.3.0
root=${WASMNODE_MCP_CACHE:-$HOME/.cache/wasmnode/mcp-$version}
if ! "$root/bin/python" -c "import mcp" >/dev/null 2>&1; then
  echo "[mcp] installing the MCP Python SDK $version into $root (once per machine)" >&2
  rm -rf "$root"
  python3 -m venv "$root"
  "$root/bin/pip" install --quiet "mcp==$version" >&2
fi
echo "$root/bin/python"
