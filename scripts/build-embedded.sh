#!/usr/bin/env bash
# Builds wasmnode for TARGET with its built-in guests' compiled code embedded,
# so the binary's first task on a fresh board compiles nothing:
#   1. a build (with the code embedded last time, if any),
#   2. `wasmnode precompile` of that build, under qemu-user when TARGET is not
#      this machine's architecture (the code is for any CPU of TARGET),
#   3. when that code differs from what is embedded, a second build with
#      WASMNODE_PRECOMPILED_DIR (only the runtime crate and the link redone),
#   4. a check: a first task on a fresh data dir gets its code from the binary.
# Prints the binary's path last.
#   scripts/build-embedded.sh TARGET [dev|release]
set -euo pipefail
target=${1:?usage: $0 TARGET [dev|release]}
profile=${2:-dev}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
case "$profile" in
  dev) flags=() dir=debug ;;
  release) flags=(--release --locked) dir=release ;;
  *) echo "error: profile must be dev or release, not $profile" >&2; exit 2 ;;
esac
case "$target" in
  "$(uname -m)"-*) runner=() ;;
  aarch64-*) runner=(qemu-aarch64-static) ;;
  armv7-*) runner=(qemu-arm-static) ;;
  *) echo "error: no way to run a $target binary here" >&2; exit 2 ;;
esac
code="target/$target/precompiled-$dir"
binary="target/$target/$dir/wasmnode"
build() {
  if [ -f "$code/MANIFEST" ]; then
    WASMNODE_PRECOMPILED_DIR="$root/$code" "$cargo" build "${flags[@]}" --target "$target" -p wasmnode --bin wasmnode >&2
  else
    env -u WASMNODE_PRECOMPILED_DIR "$cargo" build "${flags[@]}" --target "$target" -p wasmnode --bin wasmnode >&2
  fi
}
build
rm -rf "$code.new"
# An empty configuration of its own: the default engine settings, whatever
# WASMNODE_CONFIG this shell names.
printf '' > "target/$target/precompile.toml"
"${runner[@]}" "$binary" --config "target/$target/precompile.toml" precompile --out "$code.new" >&2
if cmp -s "$code.new/MANIFEST" "$code/MANIFEST" 2>/dev/null; then
  rm -rf "$code.new"
else
  rm -rf "$code" && mv "$code.new" "$code"
  build
fi
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
# The edge profile: the standard pool alone takes ~30 s to reserve under qemu.
outcome=$(WASMNODE_PROFILE=edge WASMNODE_DATA_DIR="$data" WASMNODE_LOG=warn \
  "${runner[@]}" "$binary" --config "target/$target/precompile.toml" \
  run aggregation --full --input 'items_json=[{"a":1}]')
origin=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["code_cache"])' <<< "$outcome")
[ "$origin" = embedded ] || { echo "error: $binary's first task got its code from '$origin', not from the binary" >&2; exit 1; }
echo "$binary"
