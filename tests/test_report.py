"""A sweep over student shapes: members that cannot be built are skipped with their reason, and
``distill.report`` turns the rest into a table, a CSV and a plot."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from distill.stages import run
from distill.report import pareto, write_report
from distill.testing import write_tiny_workspace

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import compose_cfg, overrides

REPO = Path(__file__).resolve().parents[1]


def test_pareto_front_by_hand():
    rows = [{"cost": 1.0, "select": 0.70}, {"cost": 2.0, "select": 0.80}, {"cost": 3.0, "select": 0.75},
            {"cost": 2.0, "select": 0.80}, {"cost": 4.0, "select": 0.90}, {"cost": None, "select": 0.99}]
    # (3, 0.75) is beaten by (2, 0.80); equal points do not dominate each other; no cost, no place
    assert pareto(rows, "cost") == {0, 1, 3, 4}
    # the held-out score chooses nothing: a row best on it alone is still dominated
    rows[2]["heldout"] = 1.0
    assert pareto(rows, "cost") == {0, 1, 3, 4}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    ws = write_tiny_workspace(tmp_path_factory.mktemp("sweep"), 96, 24, {"teacher": "base"})
    run(compose_cfg(ws, "stage=teacher"))
    sweep_dir = ws / "sweep"
    # 2 depths x 2 head counts: 3 heads do not divide the width 16, so those two members are skipped
    args = overrides(ws, "stage=task", "general_student=null", "student.num_layers=1,2", "student.num_heads=4,3",
                     f"hydra.sweep.dir={sweep_dir}", "run_dir=${hydra:runtime.output_dir}")
    done = subprocess.run([sys.executable, "-m", "distill", "-m", *args], cwd=REPO, capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                               "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr[-2000:]
    return sweep_dir, done


def test_a_sweep_skips_what_cannot_be_built_and_runs_the_rest(sweep):
    sweep_dir, done = sweep
    finished = sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json"))
    skipped = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/skipped.json")}
    assert len(finished) == 2 and len(skipped) == 2
    for entry in skipped.values():
        assert "student.hidden_size=16 is not divisible by student.num_heads=3" in entry["reason"]
        assert "student.num_heads=3" in entry["overrides"]
    assert "skipped: " in done.stderr


def test_the_report_has_a_row_per_member_a_csv_and_a_plot(sweep, tmp_path):
    sweep_dir, _ = sweep
    paths = write_report(sweep_dir, tmp_path)
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["student"] for r in rows) == ["L1_H16_E8_A4_I20_shareall", "L2_H16_E8_A4_I20_shareall"]
    for r in rows:
        metrics = json.loads((sweep_dir / r["run"] / "metrics.json").read_text())
        assert float(r["heldout"]) == metrics["eval"]["student"]["accuracy"]
        assert float(r["latency_ms_b32"]) == metrics["latency_ms"]["torch_batch32"] > 0
        assert int(r["params_unique"]) == metrics["params"]["unique"]
        assert float(r["pct_of_teacher"]) == pytest.approx(
            100 * metrics["eval"]["student"]["accuracy"] / metrics["eval"]["teacher"]["accuracy"])
    assert any(r["pareto_latency"] == "True" for r in rows)
    table = paths["md"].read_text()
    assert table.count("| ") > 2 and "Skipped members:" in table and "not divisible by student.num_heads=3" in table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 10_000


def test_the_report_can_time_every_member_in_one_process(sweep, tmp_path):
    sweep_dir, _ = sweep
    paths = write_report(sweep_dir, tmp_path, bench_texts=["a good movie", "bad", "the plot was dull and slow"] * 4,
                         threads=1, repeats=2)
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for r in rows:  # re-measured in this process (distill.bench computes each speed-up against the teacher)
        assert float(r["latency_ms_b1"]) > 0 and float(r["speedup_b1"]) > 0
    b32 = sorted(float(r["latency_ms_b32"]) for r in rows)
    assert [r["pareto_latency"] for r in sorted(rows, key=lambda r: float(r["latency_ms_b32"]))][0] == "True"
    assert b32[0] <= b32[1]


def test_several_directories_make_one_front_each_run_named_by_its_directory(sweep, tmp_path):
    """Several studies' kept results with one teacher: one table, CSV and plot, and the front across all of them."""
    import shutil

    from distill.errors import ConfigError

    sweep_dir, _ = sweep
    for study in ("depth", "shared"):
        shutil.copytree(sweep_dir, tmp_path / study)
    # the copy in 'shared' is made better than every other run: the front across both directories must hold it
    best = next((tmp_path / "shared").glob("*/metrics.json"))
    metrics = json.loads(best.read_text())
    metrics["eval"]["student_select"]["accuracy"] = 1.0
    metrics["speedup"]["torch_batch32"] = 1e6
    best.write_text(json.dumps(metrics))
    paths = write_report([tmp_path / "depth", tmp_path / "shared"], tmp_path / "front")
    with paths["csv"].open() as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    members = sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json"))
    assert sorted(rows) == sorted(f"{study}/{m}" for study in ("depth", "shared") for m in members)
    winner = f"shared/{best.parent.name}"
    assert [run for run, r in rows.items() if r["pareto_latency"] == "True"] == [winner]
    assert float(rows[winner]["select"]) == 1.0
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="--out"):
        write_report([tmp_path / "depth", tmp_path / "shared"])


def test_the_report_lists_teacher_runs_and_evaluations_too(sweep, tmp_path):
    """One entry point for a runs directory: the teacher run beside the sweep, and a stage=eval result."""
    sweep_dir, _ = sweep
    ws = sweep_dir.parent
    teacher_model = ws / "runs" / "teacher" / "sst2" / "model"
    run(compose_cfg(ws, "stage=eval", f"model={teacher_model}", f"run_dir={ws / 'runs' / 'eval'}"))
    paths = write_report(ws / "runs", tmp_path)
    table = paths["md"].read_text()
    teacher = json.loads((ws / "runs" / "teacher" / "sst2" / "metrics.json").read_text())
    assert "| teacher/sst2 | teacher | sst2 | (teacher) |" in table
    assert f"accuracy {100 * teacher['eval']['teacher']['accuracy']:.2f} (dev)" in table
    assert f"| {teacher_model} | dev | accuracy {100 * teacher['eval']['teacher']['accuracy']:.2f} |" in table


def _task_metrics(select: float, score: float, teacher: float) -> dict:
    return {"stage": "task", "student": "L3", "steps": 10, "train_seconds": 5.0,
            "phases": {"prediction": {"losses": {"soft_ce": 0.1, "hard_ce": 0.2, "loss": 0.3}}},
            "eval": {"selected_on": "train holdout", "reported_on": "dev", "student": {"accuracy": score},
                     "student_select": {"accuracy": select}, "teacher": {"accuracy": teacher}}}


def test_compare_averages_seeds_and_shows_general_runs_held_out_losses(tmp_path):
    from distill.report import comparison

    for name, sel, score in [("kd_seed1", 0.90, 0.80), ("kd_seed2", 0.92, 0.84), ("solo", 0.5, 0.5)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({**_task_metrics(sel, score, 0.88), "wall_seconds": 90}))
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "metrics.json").write_text(json.dumps({"stage": "teacher"}))
    # a general run logged 6 windows: the last third (steps 50, 60) is averaged
    (tmp_path / "general").mkdir()
    (tmp_path / "general" / "metrics.json").write_text(json.dumps(
        {"stage": "general", "steps": 60, "losses": {"mlm": 0.0, "cosine": 0.0, "loss": 0.0}}))
    (tmp_path / "general" / "log.jsonl").write_text("\n".join(json.dumps(
        {"step": 10 * i, "loss": 10.0 - i, "mlm": 5.0 - i / 2, "cosine": 0.5}) for i in range(1, 7)))
    text = comparison(tmp_path)
    assert "| kd_seed1 | L3 | prediction: soft_ce+hard_ce | 10 | 5 s | 1.5 min | dev (picked on train holdout) | 90.00 | 80.00 | 88.00 | 90.9% | - |" in text
    # means: select (90 + 92) / 2, held out (80 + 84) / 2 = 82 = 93.2% of 88; one-seed runs have no mean row
    assert "| kd | 2 | 91.00 | 82.00 (80.00, 84.00) | 88.00 | 93.2% |" in text
    runs = [line.split(" | ")[0][2:] for line in text.split("\n\n")[0].splitlines()[2:]]
    assert runs == ["kd_seed1", "kd_seed2", "solo"]  # the teacher stage is not a row
    assert "| solo | 1 |" not in text
    assert text.endswith("| general | 60 | 50-60 | 4.5000 | 2.2500 | 0.5000 |\n")  # loss (4 + 5) / 2, mlm (2 + 2.5) / 2
    assert (tmp_path / "results.md").read_text() == text


def test_stage_times_split_each_runs_wall_time_and_add_up_the_study(tmp_path):
    from distill.report import stage_times

    task = {**_task_metrics(0.9, 0.8, 0.88), "wall_seconds": 420.0, "augment": {"seconds": 30.0},
            "teacher_outputs": {"prediction": {"live_batches": 7, "stored_batches": 14}},
            "seconds_after_training": {"held_out_eval": 6.0, "bench": 54.0}}
    task["phases"]["prediction"] |= {"epochs": [{"seconds": 120.0}, {"seconds": 60.0}, {"seconds": 60.0}],
                                     "eval_seconds": 30.0}
    teacher = {"stage": "teacher", "wall_seconds": 720.0, "train_seconds": 600.0,
               "phases": {"finetune": {"epochs": [{"seconds": 600.0}], "eval_seconds": 60.0}}}
    for name, m in (("row", task), ("needs/teacher", teacher)):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    lines = stage_times(tmp_path)
    # task: 420 s = 30 augmentation + 120 first epoch + 120 later + 36 evaluation + 54 benchmark + 60 rest
    assert "| row | task | 7 | 0.5 | 2.0 | 2.0 | 0.6 | 0.9 | 1.0 | 7.0 |" in lines
    # the teacher: no augmentation or benchmark recorded, so the rest is the wall minus training and evaluation
    assert "| needs/teacher | teacher | - | 0.0 | 10.0 | 0.0 | 1.0 | - | 1.0 | 12.0 |" in lines
    assert lines[-1] == "| all runs | | | | | | | | | 19.0 |"
    # resumed by an older version: its wall time counts from the resume, its epochs from the start, so no rest is
    # made up from them
    (tmp_path / "row" / "metrics.json").write_text(json.dumps({**task, "wall_seconds": 300.0, "resumed_at_step": 40}))
    assert "| row | task | 7 | 0.5 | 2.0 | 2.0 | 0.6 | 0.9 | - | 5.0 (from step 40) |" in stage_times(tmp_path)
    # resumed with its earlier wall time carried: the whole run, so the rest is told again
    (tmp_path / "row" / "metrics.json").write_text(json.dumps({**task, "wall_seconds": 480.0, "resumed_at_step": 40,
                                                                "wall_seconds_before_resume": 200.0}))
    assert "| row | task | 7 | 0.5 | 2.0 | 2.0 | 0.6 | 0.9 | 2.0 | 8.0 (resumed at step 40) |" in stage_times(tmp_path)


def test_keep_copies_what_the_figures_need_and_reports_from_the_copies(tmp_path, capsys):
    from distill.report import main

    runs = tmp_path / "runs"
    for name in ("kd_seed1", "kd_seed2"):
        run = runs / "task" / name
        (run / ".hydra").mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(_task_metrics(0.9, 0.8, 0.88)))
        (run / "config.yaml").write_text("seed: 1\n")
        (run / ".hydra" / "overrides.yaml").write_text("- recipe=fast\n")
        (run / "checkpoints" / "step_4").mkdir(parents=True)
        (run / "checkpoints" / "step_4" / "metrics.json").write_text("{}")  # not a run
        (run / "model").mkdir()
    assert main([str(runs), "--keep", str(tmp_path / "kept"), "--compare"]) == 0
    kept = tmp_path / "kept" / "task"
    assert sorted(p.name for p in kept.iterdir()) == ["kd_seed1", "kd_seed2"]
    assert sorted(p.name for p in (kept / "kd_seed1").iterdir()) == ["config.yaml", "metrics.json", "overrides.yaml"]
    assert "| task/kd | 2 | 90.00 | 80.00 (80.00, 80.00) |" in (tmp_path / "kept" / "results.md").read_text()


def test_an_ablation_table_reads_each_rows_changes_from_its_config(tmp_path):
    from distill.report import ablation_table, update_blocks

    recipe = ("stage:\n  phases:\n  - weights: {soft_ce: 1.0, hard_ce: 1.0}\n    lr: 0.0003\n"
              "student: {num_layers: 3}\nrun_dir: runs/a/recipe\nteacher: {finetuned: runs/a/teacher}\n")
    runs = {"recipe": (recipe, 0.80, 0.78, 600),
            # where the files went (run_dir, the teacher's path) is no change; a zeroed weight and a list setting are
            "no_labels": (recipe.replace("hard_ce: 1.0", "hard_ce: 0").replace("runs/a", "runs/b"), 0.79, 0.785, 540),
            "deeper": (recipe.replace("num_layers: 3", "num_layers: 5") + "extra: [1, 2]\n", 0.83, 0.80, 900)}
    for name, (config, select, score, wall) in runs.items():
        (tmp_path / "kept" / name).mkdir(parents=True)
        (tmp_path / "kept" / name / "config.yaml").write_text(config)
        (tmp_path / "kept" / name / "metrics.json").write_text(
            json.dumps({**_task_metrics(select, score, 0.88), "wall_seconds": wall,
                        "params": {"total": 9, "non_embedding": 5, "unique": 9}}))
    table = ablation_table(tmp_path / "kept" / "recipe", [tmp_path / "kept"])
    assert table.splitlines()[2:] == [
        "| kept/recipe | (the recipe) | 80.00 (train holdout) | 78.00 (dev) | 88.6% |  |  | 0.1 / 10.0 |",
        "| kept/deeper | `student.num_layers=5`, `extra=[1, 2]` | 83.00 (train holdout) | 80.00 (dev) | 90.9% | +3.00 | "
        "+2.00 | 0.1 / 15.0 |",
        "| kept/no_labels | `stage.phases.0.weights.hard_ce=0` | 79.00 (train holdout) | 78.50 (dev) | 89.2% | -1.00 | "
        "+0.50 | 0.1 / 9.0 |"]
    block = "<!-- ablation: kept/recipe kept -->\nstale\n<!-- /ablation -->"
    assert update_blocks(f"x\n{block}\ny", tmp_path) == f"x\n<!-- ablation: kept/recipe kept -->\n{table}<!-- /ablation -->\ny"
