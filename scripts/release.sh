#!/usr/bin/env bash
# Builds the release: a static wasmnode for each target with its built-in
# guests' compiled code embedded (scripts/build-embedded.sh, which checks
# it with a first task on a fresh data dir), packed as
# dist/wasmnode-VERSION-TARGET.tar.gz (the binary, README, LICENSE and the
# licence texts of every bundled dependency) with dist/SHA256SUMS.
#   scripts/release.sh [TARGET...]   (default: x86_64, aarch64 and armv7 musl)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
scripts/install-cross.sh "${targets[@]}"
mkdir -p dist
for target in "${targets[@]}"; do
  start=$(date +%s)
  binary=$(scripts/build-embedded.sh "$target" release | tail -1)
  file "$binary" | grep -qE "statically linked|static-pie linked" || { echo "error: $binary is not static" >&2; exit 1; }
  name="wasmnode-$version-$target"
  stage="target/release-stage/$name"
  rm -rf "$stage" && mkdir -p "$stage"
  cp "$binary" README.md LICENSE "$stage/"
  python3 scripts/third-party-licenses.py "$target" "$stage/THIRD-PARTY-LICENSES.txt"
  tar -C target/release-stage -czf "dist/$name.tar.gz" --owner=0 --group=0 --numeric-owner "$name"
  echo "dist/$name.tar.gz: $(du -h "dist/$name.tar.gz" | cut -f1) in $(( $(date +%s) - start )) s"
done
(cd dist && sha256sum wasmnode-*.tar.gz > SHA256SUMS && cat SHA256SUMS)
