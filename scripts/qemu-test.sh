#!/usr/bin/env bash
# Builds the node for an ARM target, with its built-ins' compiled code
# embedded as a release is (scripts/build-embedded.sh), and runs tests/edge.rs
# against it under qemu-user: `wasmnode run` (compiling nothing), a file tool
# over a mount, `serve` with /health and API jobs, and a guest that never
# ends (TIMEOUT).
#   scripts/qemu-test.sh aarch64-unknown-linux-musl
set -euo pipefail
target=${1:?usage: $0 TARGET}
case "$target" in
  aarch64-*) qemu=qemu-aarch64-static arch=aarch64 ;;
  armv7-*) qemu=qemu-arm-static arch=arm ;;
  *) echo "error: no qemu for $target" >&2; exit 2 ;;
esac
cargo=${CARGO:-cargo}
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-cross.sh" "$target"
binary="$root/$("$root/scripts/build-embedded.sh" "$target" dev | tail -1)"
file "$binary" | grep -qE "statically linked|static-pie linked" || { echo "error: $binary is not static: $(file "$binary")" >&2; exit 1; }
wrapper="$root/target/$target/qemu-wasmnode"
printf '#!/bin/sh\nexec %s %s "$@"\n' "$(command -v "$qemu")" "$binary" > "$wrapper"
chmod +x "$wrapper"
# The edge profile, as the README says to run on a board (its small pool is
# reserved in about 2 s under qemu, the standard one's in about 30 s).
# --workspace, as every phase of `make test`: `-p wasmnode-e2e` alone resolves
# other features and rebuilt 82 crates of the host build (2 min 20 s).
WASMNODE_PROFILE=edge WASMNODE_BIN="$wrapper" WASMNODE_EXPECT_ARCH="$arch" \
  "$cargo" test --workspace --test edge -- --ignored --test-threads=1
