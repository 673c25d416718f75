#!/usr/bin/env bash
# Makes sure the active Rust toolchain can build for wasm32-wasip2.
# Tries rustup first; if rustup cannot download, falls back to the bundled
# rust-std kept in ../shared/toolchain (rustc 1.95.0 only) when it exists.
set -euo pipefail
sysroot=$(rustc --print sysroot)
if [ -d "$sysroot/lib/rustlib/wasm32-wasip2/lib" ]; then exit 0; fi
if command -v rustup >/dev/null 2>&1 && rustup target add wasm32-wasip2 >/dev/null 2>&1; then
  echo "wasm32-wasip2 installed with rustup"
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
bundled="$here/../../shared/toolchain/install-wasm32-wasip2.sh"
if [ -x "$bundled" ]; then
  exec "$bundled"
fi
echo "error: cannot install the wasm32-wasip2 target: rustup failed and no bundled rust-std was found." >&2
echo "       Run 'rustup target add wasm32-wasip2' on a machine with access to static.rust-lang.org." >&2
exit 1
