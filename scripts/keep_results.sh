#!/usr/bin/env bash
# Copy the metrics.json files (and stage_times.tsv, if any) of a runs directory into results/NAME,
# keeping their relative paths, then rebuild its table: the README's figures come from these copies.
# Usage: bash scripts/keep_results.sh RUNS NAME   e.g. bash scripts/keep_results.sh runs/sst2_full sst2_full
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: keep_results.sh RUNS NAME}
dest=results/${2:?usage: keep_results.sh RUNS NAME}
mkdir -p "$dest"
(cd "$runs" && find . -name metrics.json -not -path '*/checkpoints/*' -not -path '*/multirun/*') | while read -r f; do
  mkdir -p "$dest/$(dirname "$f")"
  cp "$runs/$f" "$dest/$f"
done
[ ! -f "$runs/stage_times.tsv" ] || cp "$runs/stage_times.tsv" "$dest/"
.venv/bin/python -m distill report --compare "$dest"
