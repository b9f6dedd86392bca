#!/usr/bin/env bash
# The README's test command, timed: writes its summary line and wall time to results/suite_time.txt, and its
# 20 slowest tests to results/suite_durations.txt (what to trim when the suite nears its 10-minute budget).
# Run it alone (another torch job on these 2 cores slows both about tenfold).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
rc=0
out=$(.venv/bin/python -m pytest -q --durations=20 2>&1) || rc=$?
echo "$out" | tail -30
echo "$out" | grep -E '^[0-9.]+s (call|setup|teardown) ' > results/suite_durations.txt || true
echo "$(date -u +%F) $(echo "$out" | tail -1); exit code $rc; set-up and suite $((SECONDS - start)) s" \
  | tee results/suite_time.txt
exit $rc
