#!/usr/bin/env bash
# Re-choose recipe=fast's learning rate and frozen word embeddings on rt_polarity's selection split (dev) only.
# The rule, written before any run (issue 32):
#   - candidates: lr in {1e-4, 2e-4, 3e-4} x word embeddings {frozen, trained}, each at seeds 42 and 1,
#     everything else as recipe=fast (3-layer slice, soft + hard CE, 3 epochs = 795 steps);
#   - the candidate with the highest mean dev accuracy over the two seeds wins (dev also picks each
#     run's checkpoint; test is never read for the choice);
#   - a tie (means within 0.10 points) goes to the lower lr, then to frozen embeddings (fewer trained weights);
#   - the quickstart's headline is then the winner at seed 42 on test, as `bash scripts/quickstart.sh` runs it.
# RUNS (default runs/quickstart) must hold the quickstart's teacher. Then:
#   python -m distill report --compare $RUNS/select
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/quickstart}
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for seed in 42 1; do
  for lr in 1e-4 2e-4 3e-4; do
    for emb in frozen trained; do
      freeze='[word_embeddings]'; [ "$emb" = trained ] && freeze='[]'
      name="lr${lr}_${emb}_seed${seed}"
      [ -f "$RUNS/select/$name/metrics.json" ] && continue
      $PY -m distill recipe=fast "runs_root=$RUNS" train.threads=2 train.progress=false bench.enabled=false \
        "run_dir=$RUNS/select/$name" train.seed=$seed stage.phases.0.lr=$lr "stage.phases.0.freeze=$freeze"
    done
  done
done
$PY -m distill report --compare "$RUNS/select"
