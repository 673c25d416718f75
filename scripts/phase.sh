#!/usr/bin/env bash
# Runs one named phase of `make test`, printing how long it took and
# appending "NAME SECONDS STATUS" to $PHASE_LOG (for the final summary).
set -uo pipefail
name=$1; shift
start=$(date +%s)
echo "==> [$name] $*"
"$@"
status=$?
took=$(( $(date +%s) - start ))
echo "<== [$name] ${took}s (exit $status)"
[ -n "${PHASE_LOG:-}" ] && echo "$name $took $status" >> "$PHASE_LOG"
exit $status
