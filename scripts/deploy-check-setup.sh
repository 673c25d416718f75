#!/usr/bin/env bash
# Prepares the checkers of the deployment files (`make test-deploy`): a
# virtualenv with kubernetes-validate (Kubernetes' own OpenAPI schemas, per
# release, bundled) and python-hcl2 + jsonschema (to parse the Nomad job and
# check it), made once per machine under ~/.cache/wasmnode/deploy-check-N;
# and systemd (for `systemd-analyze verify`). Prints the path of its python.
set -euo pipefail
root=${WASMNODE_DEPLOY_CACHE:-$HOME/.cache/wasmnode/deploy-check-1}
command -v systemd-analyze >/dev/null 2>&1 || "$(dirname "$0")/apt-install.sh" systemd
if ! "$root/bin/python" -c "import kubernetes_validate, hcl2, jsonschema" >/dev/null 2>&1; then
  echo "[deploy] installing kubernetes-validate, python-hcl2 and jsonschema into $root (once per machine)" >&2
  rm -rf "$root"
  python3 -m venv "$root"
  "$root/bin/pip" install --quiet "kubernetes-validate==1.37.0" "python-hcl2==8.1.4" "jsonschema==4.25.1" >&2
fi
echo "$root/bin/python"
