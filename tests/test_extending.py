"""docs/extending.md's "Add a loss term", done on a copy of the package: the term file and its weight, and
nothing else, give a term that trains, is logged, and whose teacher inputs the stores answer."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import distill
from distill.testing import write_tiny_workspace

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "extending.md").read_text()


def doc_block(after: str) -> str:
    """The first fenced Python block after the line containing ``after`` in docs/extending.md, dedented."""
    rest = DOC[DOC.index(after):]
    block = re.search(r"```python\n(.*?)```", rest, re.S).group(1)
    indent = min(len(line) - len(line.lstrip()) for line in block.splitlines() if line.strip())
    return "\n".join(line[indent:] for line in block.splitlines()) + "\n"


def run_distill(package_root: Path, *args: str) -> subprocess.CompletedProcess:
    return python(package_root, "-m", "distill", *args)


def python(package_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_root)}  # the copy, ahead of the installed package
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=package_root, env=env)


def test_add_a_loss_term_as_the_docs_say(tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(Path(distill.__file__).parent, root / "distill", ignore=shutil.ignore_patterns("__pycache__"))
    # 1. the file, as the page gives it
    (root / "distill" / "terms" / "logit_mse.py").write_text(doc_block("1. **The file.**"))
    ws = write_tiny_workspace(tmp_path / "ws", 96, 24, {"teacher": "sequence_classification"})
    args = ["recipe=fast", "task=sst2", f"task.data_dir={ws / 'data'}", f"teacher.finetuned={ws / 'teacher'}",
            f"teacher.name_or_path={ws / 'teacher'}", f"runs_root={tmp_path / 'runs'}", "student.num_layers=2",
            "student.hidden_size=32", "student.embedding_size=32", "student.num_heads=4", "student.intermediate_size=20",
            "student.max_position_embeddings=64", "train.batch_size=16", "train.max_steps=12", "train.log_every=1",
            "train.progress=false", "bench.enabled=false", "stage.phases.0.eval_every=0",
            "stage.phases.0.weights.soft_ce=0", "stage.phases.0.weights.logit_mse=1"]

    # without step 2: the weight is an unknown key, in one line; and the term alone fails at import, naming the line
    proc = run_distill(root, *args)
    assert proc.returncode == 2 and "Key 'logit_mse' not in 'LossWeights'" in proc.stderr, proc.stderr[-2000:]
    proc = python(root, "-c", "import distill.terms")
    assert proc.returncode != 0 and "loss term(s) logit_mse have no weight: add `<name>: float = 0.0`" in proc.stderr

    # 2. its weight: one line in LossWeights
    config = root / "distill" / "config.py"
    text = config.read_text()
    anchor = "    cosine: float = 0.0\n"
    assert text.count(anchor) == 1
    config.write_text(text.replace(anchor, anchor + "    logit_mse: float = 0.0\n"))

    proc = run_distill(root, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    values = [r["logit_mse"] for r in records if "logit_mse" in r]
    assert len(values) == 12 and all(0 < v < float("inf") for v in values), values
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # it reads the teacher's logits alone: the logit store answers it after the first epoch
    sources = metrics["teacher_outputs"]["prediction"]
    assert sources["live_batches"] > 0 and sources["stored_batches"] > 0, sources
