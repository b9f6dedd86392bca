#!/usr/bin/env bash
# The README's test command, timed: writes its summary line and wall time to results/suite_time.txt.
# Run it alone (another torch job on these 2 cores slows both about tenfold).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
summary=$(bash scripts/setup.sh && .venv/bin/python -m pytest -q 2>&1 | tail -1)
echo "$(date -u +%F) $summary; set-up and suite $((SECONDS - start)) s" | tee results/suite_time.txt
