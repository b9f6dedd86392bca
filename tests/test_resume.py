"""A killed run, resumed, ends exactly where an uninterrupted run ends.

The kills are real: a subprocess runs the CLI with a ``sitecustomize`` (test
code on PYTHONPATH, nothing in the library) that sends SIGKILL or SIGTERM to
its own process after the N-th checkpoint, or in the middle of writing one.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.testing import write_tiny_workspace


REPO = Path(__file__).resolve().parents[1]
TIMING = ("train_seconds", "train_examples_per_second", "examples_per_second", "eval_seconds", "checkpoint_seconds", "rss_mb",
          "seconds", "first_epoch_examples_per_second", "later_epochs_examples_per_second", "wall_seconds",
          "resumed_at_step", "wall_seconds_before_resume", "seconds_after_training")

KILLER = '''
import os, signal
import distill.checkpoint as ckpt
import distill.files as files

mode, n = os.environ["KILL_MODE"], int(os.environ["KILL_AT"])
calls = {"save": 0, "replace": 0}
original_save, original_replace = ckpt.Checkpoints.save, os.replace

def save(self, *args, **kwargs):
    path = original_save(self, *args, **kwargs)
    calls["save"] += 1
    if calls["save"] == n and mode in ("KILL", "TERM"):
        os.kill(os.getpid(), signal.SIGKILL if mode == "KILL" else signal.SIGTERM)
    return path

def replace(src, dst, *args, **kwargs):
    # the checkpoint file is written, its directory not yet renamed into place
    if mode == "MID_WRITE" and os.path.basename(str(src)).startswith(".step-"):
        calls["replace"] += 1
        if calls["replace"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    return original_replace(src, dst, *args, **kwargs)

ckpt.Checkpoints.save = save
files.os.replace = replace

if mode in ("START", "INT_AT_START"):  # right after the run directory is claimed, before any data or model loads
    import distill.rundir as rundir

    # a shell that starts the suite in the background (nohup ... &) passes SIGINT on ignored: make it a Ctrl-C again
    signal.signal(signal.SIGINT, signal.default_int_handler)

    original_start = rundir.start

    def start(cfg):
        run = original_start(cfg)
        os.kill(os.getpid(), signal.SIGKILL if mode == "START" else signal.SIGINT)
        return run

    rundir.start = start
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = write_tiny_workspace(tmp_path_factory.mktemp("resume"), 64, 16, {"teacher": "sequence_classification"})
    (root / "killer").mkdir()
    (root / "killer" / "sitecustomize.py").write_text(KILLER)
    return root


def args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "stage=task", "task=sst2", f"task.data_dir={root / 'data'}", f"teacher.finetuned={root / 'teacher'}",
        f"runs_root={root / 'runs'}", f"run_dir={run_dir}",
        "student.num_layers=2", "student.hidden_size=16", "student.embedding_size=8", "student.num_heads=4",
        "student.intermediate_size=20", "student.sharing=all", "student.max_position_embeddings=64",
        "train.batch_size=8", "train.max_steps=7", "train.checkpoint_every=3", "train.log_every=2",
        "train.progress=false", "stage.phases.1.eval_every=2", "bench.enabled=false", "general_student=null", *extra,
    ]


def cli(root: Path, run_dir: Path, *extra: str, kill: tuple[str, int] | None = None,
        cache: str | None = None) -> subprocess.CompletedProcess:
    # each run directory its own datasets cache (tokenized data, teacher stores) unless told to share one: a run
    # that starts with the stores another run filled reads them from its first step
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_DATASETS_CACHE=str(root / "caches" / (cache or run_dir.name)))
    if kill:
        env.update(PYTHONPATH=f"{root / 'killer'}{os.pathsep}{REPO}", KILL_MODE=kill[0], KILL_AT=str(kill[1]))
    return subprocess.run([sys.executable, "-m", "distill", *args(root, run_dir, *extra)],
                          capture_output=True, text=True, cwd=REPO, env=env)


def drop_timing(value):
    if isinstance(value, dict):
        return {k: drop_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [drop_timing(v) for v in value]
    return value


def outcome(run_dir: Path) -> tuple[dict, dict, list]:
    weights = load_file(str(run_dir / "model" / "model.safetensors"))
    metrics = drop_timing(json.loads((run_dir / "metrics.json").read_text()))
    log = [drop_timing(json.loads(line)) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return weights, metrics, log


@pytest.fixture(scope="module")
def reference(setup):
    proc = cli(setup, setup / "runs" / "reference")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outcome(setup / "runs" / "reference")


def assert_same(run_dir: Path, reference) -> None:
    weights, metrics, log = outcome(run_dir)
    ref_weights, ref_metrics, ref_log = reference
    assert weights.keys() == ref_weights.keys()
    for name in weights:
        assert torch.equal(weights[name], ref_weights[name]), name  # bit-identical
    assert metrics == ref_metrics
    assert log == ref_log


@pytest.mark.parametrize("kill_at", [2, 3])  # mid-phase 1; at the end of phase 1 (7 steps: checkpoints 3, 6, 7)
def test_sigkill_then_resume_equals_uninterrupted(setup, reference, kill_at):
    run_dir = setup / "runs" / f"killed-{kill_at}"
    began = time.perf_counter()
    killed = cli(setup, run_dir, kill=("KILL", kill_at))
    killed_seconds = time.perf_counter() - began
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    # without resume, the unfinished run is not silently restarted
    refused = cli(setup, run_dir)
    assert refused.returncode == 2 and "pass resume=true to continue it or overwrite=true" in refused.stderr
    resumed = cli(setup, run_dir, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same(run_dir, reference)
    # metrics.json says where the resumed part began, and its wall time carries the killed process's up to the
    # checkpoint it resumed from (less than that process lived: it went on past the checkpoint, and started Python)
    step = int(re.search(r"resuming from .* step (\d+)\)", resumed.stdout + resumed.stderr).group(1))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_at_step"] == step > 0
    assert 0 < metrics["wall_seconds_before_resume"] < killed_seconds
    assert metrics["wall_seconds"] > metrics["wall_seconds_before_resume"]


def test_kill_while_writing_checkpoint_resumes_from_previous(setup, reference):
    run_dir = setup / "runs" / "mid-write"
    killed = cli(setup, run_dir, kill=("MID_WRITE", 2))
    assert killed.returncode == -signal.SIGKILL
    ckpts = run_dir / "checkpoints"
    assert [p.name for p in ckpts.iterdir() if not p.name.startswith(".step-")] == ["step-0-3"]
    assert any(p.name.startswith(".step-0-6.tmp") for p in ckpts.iterdir())  # the half-written one
    resumed = cli(setup, run_dir, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = resumed.stdout + resumed.stderr
    assert "resuming from" in said and "step-0-3" in said
    assert_same(run_dir, reference)


def test_sigterm_saves_and_says_how_to_resume(setup, reference):
    run_dir = setup / "runs" / "terminated"
    stopped = cli(setup, run_dir, kill=("TERM", 1))
    assert stopped.returncode == 130
    assert "SIGTERM at phase 'intermediate' step 3" in stopped.stderr and "resume=true" in stopped.stderr
    resumed = cli(setup, run_dir, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same(run_dir, reference)


def test_resume_refuses_a_changed_config(setup):
    run_dir = setup / "runs" / "changed"
    assert cli(setup, run_dir, kill=("KILL", 1)).returncode == -signal.SIGKILL
    changed = cli(setup, run_dir, "resume=true", "stage.phases.0.lr=1e-3")
    assert changed.returncode == 2
    assert "resume: the config differs from the run being resumed (stage.phases.0.lr: 5e-05 -> 0.001)" in changed.stderr


def test_overwrite_keeps_the_finished_run_until_the_new_one_finishes(setup, reference):
    run_dir = setup / "runs" / "overwritten"
    assert cli(setup, run_dir).returncode == 0
    assert_same(run_dir, reference)
    # killed right after start: the finished run is set aside, not deleted...
    killed = cli(setup, run_dir, "overwrite=true", kill=("START", 1))
    assert killed.returncode == -signal.SIGKILL
    assert (run_dir / ".previous" / "model" / "model.safetensors").is_file() and not (run_dir / "metrics.json").exists()
    # ...and the next command in this run directory puts it back (so it is a finished run again)
    refused = cli(setup, run_dir)
    assert refused.returncode == 2 and "holds a finished run; pass overwrite=true" in refused.stderr
    assert not (run_dir / ".previous").exists()
    assert_same(run_dir, reference)
    # Ctrl-C before the first checkpoint: restored at once
    interrupted = cli(setup, run_dir, "overwrite=true", kill=("INT_AT_START", 1))
    assert interrupted.returncode != 0 and not (run_dir / ".previous").exists()
    assert_same(run_dir, reference)
    # a replacement that finishes removes the old run
    replaced = cli(setup, run_dir, "overwrite=true", cache="replacement")  # empty stores, as the reference had
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert not (run_dir / ".previous").exists()
    assert_same(run_dir, reference)


def test_resume_refuses_another_thread_count_unless_accepted(setup, reference):
    run_dir = setup / "runs" / "threads"
    assert cli(setup, run_dir, "train.threads=1", kill=("KILL", 2)).returncode == -signal.SIGKILL
    changed = cli(setup, run_dir, "resume=true", "train.threads=2")
    assert changed.returncode == 2
    assert "train.threads: 1 -> 2" in changed.stderr and "resume_accept=[train.threads]" in changed.stderr
    accepted = cli(setup, run_dir, "resume=true", "train.threads=2", "resume_accept=[train.threads]")
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert (run_dir / "metrics.json").is_file()


def test_a_run_that_reads_what_another_run_stored_ends_the_same(setup, reference):
    """The losses read stored teacher outputs whichever run stored them: a second run of the same command with the
    reference's stores runs the teacher on no batch and ends with the same weights, metrics and log."""
    run_dir = setup / "runs" / "warm"
    warm = cli(setup, run_dir, cache="reference")
    assert warm.returncode == 0, warm.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["teacher_outputs"] == {"intermediate": {"live_batches": 0, "stored_batches": 7},
                                          "prediction": {"live_batches": 0, "stored_batches": 7}}
    weights, metrics, log = outcome(run_dir)
    ref_weights, ref_metrics, ref_log = reference
    for name in weights:
        assert torch.equal(weights[name], ref_weights[name]), name
    assert {**metrics, "teacher_outputs": None} == {**ref_metrics, "teacher_outputs": None} and log == ref_log
