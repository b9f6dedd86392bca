#!/usr/bin/env bash
# Ablation of recipe=fast on rt_polarity at the same budget (795 steps of batch 32; checkpoint picked on
# dev, test reported). Each run removes or changes one thing. Then: python -m distill report --compare $RUNS
# RUNS (default runs/exp) must hold the teacher (see scripts/rt_polarity_study.sh). NAMES: which rows.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/exp}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
run() { name=$1; shift; .venv/bin/python -m distill "runs_root=$RUNS" train.threads=2 train.progress=false \
          "run_dir=$RUNS/ablation/$name" overwrite=true bench.enabled=false "$@"; }
declare -A ROWS=(
  [full]="recipe=fast"
  [no_teacher_init]="recipe=fast stage.init.layers=random stage.init.embedding=random stage.init.head=random"
  [no_soft_labels]="recipe=fast stage.phases.0.weights.soft_ce=0"
  [no_hard_labels]="recipe=fast stage.phases.0.weights.hard_ce=0"
  [embedding_E128_svd]="recipe=fast student.embedding_size=128 stage.init.embedding=svd"
  [shared_L4_every2_mean]="recipe=fast student.num_layers=4 student.sharing=every_k student.k=2 stage.init.shared_block=mean"
  [shared_L3_all_mean]="recipe=fast student.sharing=all stage.init.shared_block=mean"
  # the training split plus 20 TinyBERT variants of each sentence (labelled by the teacher's cached
  # logits), at the same 795 steps
  [plus_augmentation]="recipe=fast augment.enabled=true train.max_steps=795"
  # TinyBERT's general distillation first (200 steps of embedding + hidden + attention MSE on the news
  # corpus, the student a slice of the *pretrained* teacher), then the same task phase from that student
  [plus_general_distillation]="recipe=fast stage.init.layers=random stage.init.embedding=random general_student=$RUNS/general_for_ablation/model"
  [plus_intermediate_phase]="stage=task student=fast3 stage.init.layers=teacher stage.init.embedding=teacher stage.init.head=teacher general_student=null train.max_steps=400 stage.phases.1.weights.hard_ce=1 stage.phases.1.lr=2e-4 stage.phases.1.eval_every=200"
)
for name in ${NAMES:-full no_teacher_init no_soft_labels no_hard_labels embedding_E128_svd shared_L4_every2_mean shared_L3_all_mean plus_augmentation plus_general_distillation plus_intermediate_phase}; do
  if [[ $name == plus_general_distillation ]]; then
    .venv/bin/python -m distill stage=general student=fast3 stage.init.layers=teacher stage.init.embedding=teacher \
      "runs_root=$RUNS" train.threads=2 train.progress=false "run_dir=$RUNS/general_for_ablation" overwrite=true train.max_steps=200
  fi
  # shellcheck disable=SC2086
  run "$name" ${ROWS[$name]}
done
.venv/bin/python -m distill report --compare "$RUNS/ablation"
