#!/usr/bin/env bash
# Builds the node's FROM-scratch image with the local Docker engine (no
# registry): the static x86_64 musl binary, and nothing else.
#   scripts/image.sh [TAG] [PROFILE]    (default wasmnode:VERSION, release)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-wasmnode:$version}
profile=${2:-release}
target=x86_64-unknown-linux-musl
scripts/install-cross.sh "$target"
"$cargo" build --profile "$profile" --target "$target" -p wasmnode --bin wasmnode
dir=$profile
[ "$profile" = dev ] && dir=debug
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "target/$target/$dir/wasmnode" "$context/wasmnode"
file "$context/wasmnode" | grep -qE "statically linked|static-pie linked" || { echo "error: the binary is not static" >&2; exit 1; }
mkdir -p "$context/data" "$context/tmp"
chmod 1777 "$context/tmp"
docker build --quiet -t "$tag" -f deploy/docker/Dockerfile "$context" >/dev/null
echo "$tag: $(docker image inspect "$tag" --format '{{.Size}}') bytes"
