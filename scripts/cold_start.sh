#!/usr/bin/env bash
# Whole wall time of a short task distillation from a cold start, then again with what the first run stored:
# SST-2, the fine-tuned MiniLM teacher, a random TinyBERT4-shaped ALBERT student (student=tinybert4,
# general_student=null), batch 32, 150 intermediate + 150 prediction steps, no benchmark (bench.enabled=false).
# The setting of issue 32's side-by-side with TextBrewer 0.2.1 (whose two processes took 281 s there; TextBrewer
# is not run here). Cold: a fresh datasets cache (no tokenized data, no teacher stores).
# Needs a fine-tuned SST-2 teacher at $TEACHER (default: trains one for 100 steps into $RUNS/teacher; its
# accuracy does not matter for the timing). Writes $OUT/times.txt and copies each run's metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/cold_start}
OUT=${OUT:-results/cold_start}
DATA=${SST2:?set SST2 to a GLUE SST-2 directory (train.tsv, dev.tsv)}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
TEACHER=${TEACHER:-$RUNS/teacher/sst2/model}
if [ ! -f "$TEACHER/config.json" ]; then
  $py -m distill stage=teacher task=sst2 "task.data_dir=$DATA" "runs_root=$RUNS" train.threads=2 train.max_steps=100 \
    train.progress=false
fi
cache=$(mktemp -d /tmp/distill-cold-XXXX)
mkdir -p "$OUT"
: > "$OUT/times.txt"
for name in cold warm; do
  start=$(date +%s.%N)
  HF_DATASETS_CACHE=$cache $py -m distill stage=task task=sst2 "task.data_dir=$DATA" "teacher.finetuned=$TEACHER" \
    student=tinybert4 general_student=null train.max_steps=150 train.threads=2 train.progress=false \
    bench.enabled=false "run_dir=$RUNS/$name" overwrite=true
  end=$(date +%s.%N)
  echo "$name: $(echo "$end - $start" | bc) s (the whole command)" | tee -a "$OUT/times.txt"
  mkdir -p "$OUT/$name" && cp "$RUNS/$name/metrics.json" "$OUT/$name/metrics.json"
done
rm -rf "$cache"
