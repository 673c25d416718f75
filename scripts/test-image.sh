#!/usr/bin/env bash
# Builds (once) the images the container tests use, without any registry:
# a rootfs holding Debian's static busybox and its applet links, imported
# with `docker import` twice: wasmnode-test/busybox:1 (CMD sh) and
# wasmnode-test/upper:1 (CMD tr a-z A-Z, a stand-in for a tool image).
# Prints the busybox image's name.
set -euo pipefail
image=wasmnode-test/busybox:1
upper=wasmnode-test/upper:1
if docker image inspect "$image" "$upper" >/dev/null 2>&1; then echo "$image"; exit 0; fi
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "busybox is missing: install Debian's busybox-static" >&2; exit 1; }
file "$busybox" 2>/dev/null | grep -q "statically linked" || ldd "$busybox" 2>&1 | grep -q "not a dynamic" || {
  echo "$busybox is not statically linked: install Debian's busybox-static" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/workspace" "$root/etc"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
echo "nobody:x:65534:65534:nobody:/nonexistent:/bin/false" > "$root/etc/passwd"
tar -C "$root" -cf - . | docker import -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
tar -C "$root" -cf - . | docker import -c 'CMD ["tr", "a-z", "A-Z"]' - "$upper" >/dev/null
echo "$image"
