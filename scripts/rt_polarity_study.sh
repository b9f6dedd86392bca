#!/usr/bin/env bash
# How recipe=fast was chosen, on rt_polarity (checkpoint picked on dev, test reported): each run changes
# one setting of the default recipe (3-layer slice of the teacher, FFN halved, soft + hard CE, lr 2e-4,
# word embeddings frozen, 3 epochs = 795 steps). Then: python -m distill report --compare $RUNS
# RUNS (default runs/exp) must hold the teacher: python -m distill stage=teacher runs_root=$RUNS
#   train.max_steps=400 stage.phases.0.eval_every=100 (the quickstart's teacher).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/exp}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
run() { name=$1; shift; .venv/bin/python -m distill recipe=fast "runs_root=$RUNS" train.threads=2 train.progress=false \
          "run_dir=$RUNS/$name" overwrite=true "$@"; }
run r2_lr1e-4_unfrozen stage.phases.0.lr=1e-4 'stage.phases.0.freeze=[]'
run r3_freeze_600 stage.phases.0.lr=1e-4 train.max_steps=600
run r4_freeze_795 stage.phases.0.lr=1e-4 bench.enabled=false
run r5_lowest stage.phases.0.lr=1e-4 stage.init.source_layers=lowest bench.enabled=false
run r6_lr2e-4 bench.enabled=false
run r7_lr3e-4 stage.phases.0.lr=3e-4 bench.enabled=false
run r8_hardonly_lr2e-4 stage.phases.0.weights.soft_ce=0 bench.enabled=false
.venv/bin/python -m distill report --compare "$RUNS"
