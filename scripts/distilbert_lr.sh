#!/usr/bin/env bash
# The DistilBERT preset's learning rate at its batch of 32 (DistilBERT used 5e-4 with batches of about
# 4,000). Each LR runs recipe=distilbert (general stage: masked-LM + cosine, student from every other
# teacher layer) for STEPS steps on the default corpus. No batch is seen twice in the first epoch, so each
# logged window's loss is measured on text the student had not trained on when it was computed
# (progressive validation): the mean over the last third of the windows compares the learning rates on
# held-out text, and the table goes to $RUNS/results.md.
# Usage: bash scripts/distilbert_lr.sh; LRS (default "5e-4 2e-4 1e-4 5e-5"), STEPS (150), RUNS
# (default runs/distilbert_lr).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/distilbert_lr}
STEPS=${STEPS:-150}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
for lr in ${LRS:-5e-4 2e-4 1e-4 5e-5}; do
  $py -m distill recipe=distilbert "runs_root=$RUNS" "run_dir=$RUNS/lr_$lr" "stage.phases.0.lr=$lr" \
    "train.max_steps=$STEPS" train.log_every=10 train.threads=2 train.progress=false overwrite=true
done
$py - "$RUNS" <<'EOF' | tee "$RUNS/results.md"
import json, sys
from pathlib import Path

rows = []
for run in sorted(Path(sys.argv[1]).glob("lr_*"), key=lambda p: -float(p.name[3:])):
    windows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    tail = windows[-max(1, len(windows) // 3):]
    terms = [k for k in ("loss", "mlm", "cosine", "soft_ce") if k in tail[0]]
    means = {k: sum(w[k] for w in tail) / len(tail) for k in terms}
    first = windows[-len(tail) - 1]["step"] + 1 if len(tail) < len(windows) else 1  # the averaged windows' first step
    rows.append((run.name[3:], windows[-1]["step"], f"{first}-{tail[-1]['step']}", means))
terms = list(rows[0][3])
print("| lr | steps | steps averaged | " + " | ".join(f"{t} (held-out)" for t in terms) + " |")
print("|---|---|---|" + "---|" * len(terms))
for lr, steps, span, means in rows:
    print(f"| {lr} | {steps} | {span} | " + " | ".join(f"{means[t]:.4f}" for t in terms) + " |")
EOF
