#!/usr/bin/env bash
# distill against TextBrewer 0.2.1 on the same work, one after the other in one run (nothing else running):
# SST-2, the fine-tuned MiniLM teacher, a random TinyBERT4-shaped ALBERT student, batch 32, 150 intermediate
# + 150 prediction steps. distill: scripts/cold_start.sh (a cold start, then again with what it stored).
# TextBrewer: scripts/textbrewer_phase.py, one process per phase, in its own venv (.venv-textbrewer, made here:
# torch pinned to the CPU wheel, transformers at distill's version, textbrewer 0.2.1, tensorboardX for its logs).
# Writes $OUT/summary.md and summary.json (whole wall times, examples/s per phase, the ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SST2:?set SST2 to a GLUE SST-2 directory (train.tsv, dev.tsv)}
RUNS=${RUNS:-runs/cold_start}
OUT=${OUT:-results/textbrewer_side_by_side}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
tb=.venv-textbrewer/bin/python
if [ ! -x "$tb" ]; then
  version=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
  python3 -m venv .venv-textbrewer
  $tb -m pip install -q torch==2.13.0
  $tb -m pip install -q torch==2.13.0 "transformers==$version" textbrewer==0.2.1 tensorboardX
fi
mkdir -p "$OUT"
RUNS=$RUNS OUT=$OUT/distill bash scripts/cold_start.sh
TEACHER=$RUNS/teacher/sst2/model
work=$(mktemp -d /tmp/textbrewer-XXXX)
: > "$OUT/textbrewer.jsonl"
for phase in intermediate prediction; do
  start=$(date +%s.%N)
  $tb scripts/textbrewer_phase.py $phase --teacher "$TEACHER" --train-tsv "$DATA/train.tsv" \
    --student-state "$work/student.pt" --out "$work/$phase" 2>"$OUT/textbrewer_$phase.log" | tail -1 > "$work/$phase.json"
  end=$(date +%s.%N)
  $tb -c "import json,sys; d=json.load(open(sys.argv[1])); d['process_seconds']=float(sys.argv[2]); print(json.dumps(d))" \
    "$work/$phase.json" "$(echo "$end - $start" | bc)" >> "$OUT/textbrewer.jsonl"
done
rm -rf "$work"
.venv/bin/python - "$OUT" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
tb = {d["phase"]: d for d in map(json.loads, (out / "textbrewer.jsonl").read_text().splitlines())}
walls = dict(re.findall(r"^(\w+): ([\d.]+) s", (out / "distill/times.txt").read_text(), re.M))
runs = {name: json.loads((out / f"distill/{name}/metrics.json").read_text()) for name in ("cold", "warm")}
tb_wall = sum(d["process_seconds"] for d in tb.values())
rows, summary = [], {"textbrewer": tb, "textbrewer_wall_seconds": tb_wall}
rows.append(("whole wall time, s (distill: one command; TextBrewer: its two processes)",
             f"{float(walls['cold']):.0f}", f"{float(walls['warm']):.0f}", f"{tb_wall:.0f}",
             f"{tb_wall / float(walls['cold']):.2f}x", f"{tb_wall / float(walls['warm']):.2f}x"))
summary["distill_wall_seconds"] = {k: float(v) for k, v in walls.items()}
for phase in ("intermediate", "prediction"):
    cold, warm = (runs[n]["phases"][phase]["train_examples_per_second"] for n in ("cold", "warm"))
    steady = tb[phase]["steady_examples_per_second"]
    summary[f"{phase}_examples_per_second"] = {"distill_cold": cold, "distill_warm": warm,
                                               "textbrewer_steady": steady,
                                               "textbrewer_all_steps": tb[phase]["train_examples_per_second"]}
    rows.append((f"{phase} examples/s (distill: all 150 steps; TextBrewer: steps 10-150)", f"{cold:.0f}",
                 f"{warm:.0f}", f"{steady:.0f}", f"{cold / steady:.2f}x", f"{warm / steady:.2f}x"))
lines = ["| | distill cold | distill warm | TextBrewer 0.2.1 | cold vs TextBrewer | warm vs TextBrewer |",
         "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
(out / "summary.md").write_text("\n".join(lines) + "\n")
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print("\n".join(lines))
PY
