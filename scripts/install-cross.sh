#!/usr/bin/env bash
# Makes this machine able to build and run wasmnode for the given Rust
# targets: the target's standard library (rustup, else a rust-std tarball
# for this rustc kept in ../shared/toolchain, else for armv7 built from
# rust-src by scripts/build-rust-std.sh), Debian's cross gcc (the
# linker, and the C compiler of ring, zstd and blake3) and qemu-user-static
# (to run the result here). The linkers themselves are named in
# .cargo/config.toml.
#   scripts/install-cross.sh aarch64-unknown-linux-musl ...
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 TARGET..." >&2; exit 2; }
sysroot=$(rustc --print sysroot)
version=$(rustc --version | awk '{print $2}')
bundled="$(cd "$(dirname "$0")" && pwd)/../../shared/toolchain"
packages=()
for target in "$@"; do
  case "$target" in
    x86_64-unknown-linux-musl) ;;
    aarch64-unknown-linux-musl) packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static) ;;
    armv7-unknown-linux-musleabihf) packages+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static) ;;
    *) echo "error: no cross set-up for $target" >&2; exit 2 ;;
  esac
  [ -d "$sysroot/lib/rustlib/$target/lib" ] && continue
  if rustup target add "$target" >/dev/null 2>&1; then
    echo "$target: standard library installed with rustup"
  elif [ -f "$bundled/rust-std-$version-$target.tar.xz" ]; then
    tar -xJf "$bundled/rust-std-$version-$target.tar.xz" -C "$sysroot/lib/rustlib/"
    echo "$target: standard library installed from the bundled rust-std for rustc $version"
  elif [ "$target" = armv7-unknown-linux-musleabihf ]; then
    "$(dirname "$0")/build-rust-std.sh" "$target"
  else
    echo "error: cannot install the $target standard library: rustup failed and" >&2
    echo "       there is no rust-std-$version-$target.tar.xz in shared/toolchain." >&2
    exit 1
  fi
done
[ ${#packages[@]} -eq 0 ] || "$(dirname "$0")/apt-install.sh" "${packages[@]}"
