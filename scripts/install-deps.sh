#!/usr/bin/env bash
# Installs the Debian packages the tests need (a fresh CI machine has only
# what its kind ships): busybox-static for the container-test image,
# docker-registry (a real OCI registry, started by the tests on 127.0.0.1),
# and chromium with chromium-driver (the web console's browser tests).
set -euo pipefail
need=()
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v file >/dev/null 2>&1 || need+=(file)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
exec "$(dirname "$0")/apt-install.sh" "${need[@]}"
