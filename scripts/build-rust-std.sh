#!/usr/bin/env bash
# Builds and installs the Rust standard library for a musl TARGET whose
# rust-std the toolchain mirror does not carry (armv7-unknown-linux-musleabihf),
# with this very rustc, so the target then builds like any installed one:
#   - std from the rust-src component (rustup), built once in release with
#     `-Zbuild-std` (RUSTC_BOOTSTRAP=1: the same rustc builds its own std, as
#     its release process does; nothing unstable reaches wasmnode's build),
#   - musl's start files and libc.a from Debian's musl-dev for the target's
#     architecture, gcc's crtbegin/crtend and its unwinder (libgcc_eh, as
#     libunwind.a) from Debian's cross gcc: the "self-contained" objects
#     rustc links a static musl binary with.
#   scripts/build-rust-std.sh armv7-unknown-linux-musleabihf
set -euo pipefail
target=${1:?usage: $0 TARGET}
case "$target" in
  armv7-unknown-linux-musleabihf) debarch=armhf gnu=arm-linux-gnueabihf musl=arm-linux-musleabihf ;;
  *) echo "error: no recipe for the $target standard library" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
sysroot=$(rustc --print sysroot)
lib="$sysroot/lib/rustlib/$target/lib"
[ -f "$lib/.built-by-wasmnode" ] && exit 0
rustup component add rust-src >/dev/null
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
"$root/scripts/apt-install.sh" "gcc-$gnu"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! dpkg --print-foreign-architectures | grep -qx "$debarch"; then
  $sudo dpkg --add-architecture "$debarch"
  $sudo apt-get update >/dev/null
fi
(cd "$work" && apt-get download "musl-dev:$debarch" >/dev/null 2>&1) || {
  $sudo apt-get update >/dev/null
  (cd "$work" && apt-get download "musl-dev:$debarch" >/dev/null)
}
dpkg-deb -x "$work"/musl-dev_*.deb "$work/musl"
gcc_dir=$(dirname "$("$gnu-gcc" -print-libgcc-file-name)")
self="$lib/self-contained"
mkdir -p "$self"
cp "$work/musl/usr/lib/$musl"/{crt1.o,crti.o,crtn.o,Scrt1.o,rcrt1.o,libc.a} "$self/"
cp "$gcc_dir"/{crtbegin.o,crtbeginS.o,crtend.o,crtendS.o} "$self/"
cp "$gcc_dir/libgcc_eh.a" "$self/libunwind.a"
# A crate with no dependencies: its build's deps/ holds std and only std.
mkdir -p "$work/empty/src"
printf '[package]\nname = "empty"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n' > "$work/empty/Cargo.toml"
echo 'fn main() {}' > "$work/empty/src/main.rs"
# As rustc's own build does: bitcode embedded (for crates built with LTO),
# panic_abort compiled with panic=abort (crates built with `-C panic=abort`,
# such as the containers' deadline helper, link it), the rest unwinding.
cat > "$work/rustc-wrapper" <<'WRAPPER'
#!/bin/sh
case " $* " in
  *" --crate-name panic_abort "*) exec "$@" -C embed-bitcode=yes -C panic=abort ;;
esac
exec "$@" -C embed-bitcode=yes
WRAPPER
chmod +x "$work/rustc-wrapper"
linker_var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER"
(cd "$work/empty" && env "$linker_var=$gnu-gcc" RUSTC_BOOTSTRAP=1 RUSTC_WRAPPER="$work/rustc-wrapper" \
  cargo build --release -Zbuild-std=std,panic_unwind,panic_abort --target "$target" >&2)
find "$work/empty/target/$target/release/deps" -name '*.rlib' -exec cp {} "$lib/" \;
touch "$lib/.built-by-wasmnode"
echo "$target: standard library built from rust-src with $(rustc --version)"
