#!/usr/bin/env bash
# Prints the table of phase timings collected by scripts/phase.sh.
set -euo pipefail
log=${1:?phase log}
[ -f "$log" ] || exit 0
total=0
printf '\n%-24s %8s  %s\n' phase seconds status
while read -r name secs status; do
  printf '%-24s %8s  %s\n' "$name" "$secs" "$([ "$status" = 0 ] && echo ok || echo "FAILED ($status)")"
  total=$((total + secs))
done < "$log"
printf '%-24s %8s\n' total "$total"
