#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it (torch pinned) into a fresh venv, and from a
# directory with no source tree run the installed `distill` command: --help, a tiny teacher -> task pipeline on
# tiny random models (distill.testing), a study listing and the report. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
py=$work/venv/bin/python
$py -m pip install -q --upgrade pip
$py -m pip wheel -q --no-deps -w "$work/dist" "$repo"
$py -m pip install -q torch==2.13.0 "$work"/dist/distill-*.whl
cd "$work"  # nothing of the source tree is importable from here
distill=$work/venv/bin/distill
$py -c "import distill, sys; assert '$repo' not in distill.__file__, distill.__file__; print('installed at', distill.__file__)"
$distill --help > /dev/null
$py -c "from distill.testing import write_tiny_workspace; write_tiny_workspace('ws', 96, 24, {'teacher': 'base'})"
tiny=(task=sst2 task.data_dir=ws/data teacher.name_or_path=ws/teacher runs_root=runs train.max_steps=4
      train.batch_size=8 train.progress=false)
$distill stage=teacher "${tiny[@]}"
$distill recipe=fast "${tiny[@]}" student.num_layers=2 student.hidden_size=32 student.embedding_size=32 \
  student.num_heads=4 student.intermediate_size=20 student.max_position_embeddings=64 bench.repeats=2
$distill study rt_polarity_select --list > /dev/null
$distill report runs/task/sst2
test -s runs/task/sst2/report.md
echo "wheel check: the installed distill command ran the tiny pipeline and the report"
