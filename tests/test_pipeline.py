"""End to end through the real entry point: teacher -> general -> task on tiny random models."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from distill.config import compose_config
from distill.errors import ConfigError
from distill.stages import run
from distill.testing import write_tiny_workspace

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_tiny_workspace(tmp_path_factory.mktemp("e2e"), 96, 24, {"teacher": "base"})


def overrides(root: Path, *extra: str) -> list[str]:
    return [
        "task=sst2", "corpus.fetch=[]",
        f"teacher.name_or_path={root / 'teacher'}",
        f"task.data_dir={root / 'data'}",
        f"runs_root={root / 'runs'}",
        "student.num_layers=2", "student.hidden_size=16", "student.embedding_size=8",
        "student.num_heads=4", "student.intermediate_size=20", "student.sharing=all",
        "student.max_position_embeddings=64", "corpus.max_length=32",
        "train.batch_size=8", "train.eval_batch_size=16", "train.max_steps=4", "train.log_every=2",
        "train.progress=false", "bench.repeats=2", *extra,
    ]


def compose_cfg(root: Path, *extra: str):
    return compose_config(overrides(root, *extra))


def test_teacher_general_task_chain(workspace):
    teacher = run(compose_cfg(workspace, "stage=teacher"))
    assert set(teacher["eval"]["teacher"]) == {"accuracy"}
    teacher_model = workspace / "runs" / "teacher" / "sst2" / "model"
    assert (teacher_model / "config.json").is_file()

    general = run(compose_cfg(workspace, "stage=general"))
    assert general["steps"] == 4 and set(general["losses"]) >= {"embedding", "hidden", "attention"}
    # a tiny corpus fits the layer store: the teacher runs on the first epoch's 3 batches and the next epoch reads
    epochs = general["phases"]["general"]["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1] and sum(e["examples"] for e in epochs) == general["examples_seen"]
    assert general["teacher_outputs"] == {"general": {"live_batches": 3, "stored_batches": 1}}
    assert general["phases"]["general"]["later_epochs_examples_per_second"] > 0

    task = run(compose_cfg(workspace, "stage=task"))
    run_dir = workspace / "runs" / "task" / "sst2" / "L2_H16_E8_A4_I20_shareall"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(task))
    for key in ("stage", "task", "steps", "examples_seen", "train_seconds", "train_examples_per_second", "losses", "params", "eval"):
        assert key in metrics, key
    assert metrics["steps"] == 8 and metrics["examples_seen"] == 8 * 8
    # 4 steps per phase, each over examples not stored yet: the first epoch runs the teacher (layers, then logits)
    assert metrics["teacher_outputs"] == {"intermediate": {"live_batches": 4, "stored_batches": 0},
                                          "prediction": {"live_batches": 4, "stored_batches": 0}}
    for phase in metrics["phases"].values():  # one (partial) epoch each
        assert [e["examples"] for e in phase["epochs"]] == [32] and phase["first_epoch_examples_per_second"] > 0
        assert phase["later_epochs_examples_per_second"] is None
    for phase in metrics["phases"].values():  # training throughput per phase, evaluation and checkpoints apart
        assert phase["train_examples_per_second"] > 0 and phase["eval_seconds"] >= 0 and phase["checkpoint_seconds"] > 0
        assert phase["train_seconds"] > 0
    assert metrics["phases"]["prediction"]["eval_seconds"] > 0 and metrics["phases"]["intermediate"]["eval_seconds"] == 0
    assert set(metrics["losses"]) == {"embedding", "hidden", "attention", "soft_ce", "loss"}
    assert set(metrics["params"]) == {"total", "embedding", "non_embedding", "unique"}
    # picked on a holdout of train, reported on dev (GLUE-style: no test file)
    assert set(metrics["eval"]) == {"student", "teacher", "student_select", "teacher_select", "selected_on", "reported_on",
                                    "holdout"}
    assert (metrics["eval"]["selected_on"], metrics["eval"]["reported_on"]) == ("train holdout", "dev")
    # sst2 holds out whole sentences and drops their phrases from training; the tiny data has no phrases
    assert metrics["eval"]["holdout"] == {"by": "containment", "held_out": 9, "train_rows_dropped": 0}
    assert metrics["student_init"]["general_student"].endswith("general/L2_H16_E8_A4_I20_shareall/model")
    # W_E / W_h (width 16 -> 32) learned in the general stage start the task stage (distill/projections.py)
    assert metrics["student_init"]["projections"].endswith("general/L2_H16_E8_A4_I20_shareall/model/projections.safetensors")
    assert (run_dir / "config.yaml").is_file() and (run_dir / "log.jsonl").is_file()
    # the student's CPU speed against its teacher, measured in the same process
    assert set(metrics["speedup"]) == {"torch_batch1", "torch_batch32"} and all(v > 0 for v in metrics["speedup"].values())
    assert json.loads((run_dir / "bench.json").read_text())["reference"].endswith("teacher/sst2/model")
    card = (run_dir / "model" / "README.md").read_text()
    assert "L2_H16_E8_A4_I20_shareall" in card and "Measured speed-up" in card
    assert f"- Teacher's licence: that of {workspace / 'teacher'} (see its model card)" in card
    log_lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in log_lines} == {"intermediate", "prediction"}

    # the saved student reloads with plain transformers and gives the same logits
    model_dir = run_dir / "model"
    reloaded = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(["a good movie", "the plot was dull and bad"], padding=True, return_tensors="pt")
    from distill.attention import use_score_attention

    ours = use_score_attention(AutoModelForSequenceClassification.from_pretrained(model_dir)).eval()
    torch.testing.assert_close(reloaded(**batch).logits, ours(**batch).logits, atol=1e-5, rtol=0)
    assert reloaded.config.id2label == {0: "negative", 1: "positive"}
    # no projection heads in the exported student
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "proj" in k and "mapping" not in k]
    AutoModel.from_pretrained(workspace / "runs" / "general" / "L2_H16_E8_A4_I20_shareall" / "model")

    # a finished run is never overwritten silently
    with pytest.raises(ConfigError, match="holds a finished run; pass overwrite=true"):
        run(compose_cfg(workspace, "stage=task"))

    # stage.init.embedding=svd_train fits the factorised embedding to the rows the stage trains on (train less its
    # holdout)
    cfg = compose_cfg(workspace, "stage=task", "stage.init.embedding=svd_train", "student.hidden_size=32",
                      "train.max_steps=1", "bench.enabled=false", f"run_dir={workspace / 'runs' / 'svd_train'}")
    from distill.data import task_splits_and_plan, tokenize_task

    rows = tokenize_task(task_splits_and_plan(cfg.task)[0], cfg.task, tokenizer)["train"]
    svd = run(cfg)["student_init"]["svd"]
    assert svd["train_tokens"] == sum(len(ids) for ids in rows["input_ids"]) > 0
    assert 0 < svd["kept_table"] < 1 and 0 < svd["kept_train"] < 1
    # and in the general stage, the corpus's
    cfg = compose_cfg(workspace, "stage=general", "stage.init.embedding=svd_train", "student.hidden_size=32",
                      "train.max_steps=1", f"run_dir={workspace / 'runs' / 'svd_train_general'}")
    from distill.data import load_corpus

    chunks = load_corpus(cfg.corpus, cfg.task, tokenizer)["input_ids"]
    assert run(cfg)["student_init"]["svd"]["train_tokens"] == sum(len(ids) for ids in chunks) > 0


def test_task_without_teacher_names_the_command(tmp_path):
    with pytest.raises(ConfigError, match=r"run `python -m distill stage=teacher task=sst2` first"):
        run(compose_cfg(tmp_path, "stage=task", f"teacher.finetuned={tmp_path / 'nowhere'}"))


def test_cli_reports_bad_config_in_one_line_per_problem(tmp_path):
    cmd = [sys.executable, "-m", "distill", "stage=teacher", "student.hidden_size=30", "student.num_heads=4",
           f"task.data_dir={tmp_path}", f"runs_root={tmp_path / 'runs'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert any("student.hidden_size=30 is not divisible by student.num_heads=4" in e for e in errors)
    assert any("train.tsv does not exist" in e for e in errors)
    assert "Traceback" not in proc.stderr


def test_cli_sweep_runs_independent_members(workspace):
    """A Hydra multirun over student depth: each member its own run directory, last line run_dir."""
    args = [a for a in overrides(workspace, "stage=general", "train.max_steps=2", f"runs_root={workspace / 'sweep'}")
            if not a.startswith("student.num_layers")]
    cmd = [sys.executable, "-m", "distill", "-m", *args, "student.num_layers=1,2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("run_dir: ")]
    assert [Path(p.split(": ", 1)[1]).name for p in printed] == ["L1_H16_E8_A4_I20_shareall", "L2_H16_E8_A4_I20_shareall"]
    for line in printed:
        assert json.loads((Path(line.split(": ", 1)[1]) / "metrics.json").read_text())["steps"] == 2


def test_typo_fails_at_compose(tmp_path):
    with pytest.raises(Exception, match="hiden_size"):
        compose_cfg(tmp_path, "student.hiden_size=3")


def test_student_from_teacher_learns_the_task_on_held_out_data(tmp_path):
    """recipe=fast's stage on tiny data: a teacher slice (half the layers, a narrower FFN) beats chance on dev,
    which chose nothing (a holdout of train picked the checkpoint)."""
    ws = write_tiny_workspace(tmp_path, 400, 100, {"teacher": "base"})
    common = ["train.max_steps=-1", "train.batch_size=16", "stage.phases.0.eval_every=20"]
    teacher = run(compose_cfg(ws, "stage=teacher", *common, "stage.phases.0.epochs=4", "stage.phases.0.lr=1e-3"))
    assert teacher["eval"]["teacher"]["accuracy"] > 0.8, teacher["eval"]
    student = ["student.num_layers=2", "student.hidden_size=32", "student.embedding_size=32", "student.intermediate_size=20",
               "student.sharing=none", "bench.enabled=false"]
    metrics = run(compose_cfg(ws, "recipe=fast", *common, *student, "stage.phases.0.epochs=4",
                              "stage.phases.0.lr=1e-3"))
    assert metrics["student_init"]["teacher_layers"] == [[2], [4]] and metrics["student_init"]["head"] == "teacher"
    assert metrics["eval"]["reported_on"] == "dev" and metrics["eval"]["selected_on"] == "train holdout"
    assert metrics["eval"]["student"]["accuracy"] > 0.75, metrics["eval"]
