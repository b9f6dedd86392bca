"""A study file runs its needs and rows once, records each run's command, and keeps a table that the kept files
alone rebuild."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distill.errors import ConfigError
from distill.report import comparison
from distill.study import Study, main
from distill.testing import write_tiny_workspace

STUDY = """\
# python -m distill study {path}
question: Does a higher learning rate help the tiny student?
rule: the row with the higher mean selection score over seeds wins.
common: [task=sst2, train.progress=false, "task.data_dir={data}", "runs_root={runs}", "teacher.name_or_path={teacher}"]
needs:
  teacher: [stage=teacher, train.max_steps=6]
row_common: [recipe=fast, bench.enabled=false, train.max_steps=4, student.num_layers=2, student.hidden_size=32,
             student.embedding_size=32, student.num_heads=4, student.intermediate_size=20, student.max_position_embeddings=64]
rows:
  lr_low: [stage.phases.0.lr=1e-4]
  lr_high: [stage.phases.0.lr=1e-3]
seeds: [1, 2]
"""


def test_a_study_runs_once_records_its_commands_and_keeps_its_table(tmp_path, capsys):
    ws = write_tiny_workspace(tmp_path / "ws", 64, 16, {"teacher": "base"})
    path = tmp_path / "tiny.yaml"
    path.write_text(STUDY.format(path=path, data=ws / "data", runs=tmp_path / "runs", teacher=ws / "teacher"))
    assert main([str(path), "--keep", str(tmp_path / "kept")]) == 0
    rows = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in rows.iterdir()) == ["lr_high_seed1", "lr_high_seed2", "lr_low_seed1", "lr_low_seed2"]
    # each run keeps the command that made it, and that command's config
    command = (rows / "lr_high_seed2" / "command.txt").read_text()
    assert "stage.phases.0.lr=1e-3" in command and "train.seed=2" in command
    metrics = json.loads((rows / "lr_high_seed2" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and "lr: 0.001" in (rows / "lr_high_seed2" / "config.yaml").read_text()
    assert (tmp_path / "runs" / "teacher" / "sst2" / "metrics.json").is_file()  # the need, at its own run_dir

    # the kept files alone give the same table, which `report --compare` rebuilds
    kept = tmp_path / "kept"
    assert sorted(p.name for p in (kept / "lr_low_seed1").iterdir()) == ["command.txt", "config.yaml", "log.jsonl",
                                                                         "metrics.json", "overrides.yaml"]
    table = comparison(kept)
    assert table in (kept / "table.md").read_text()
    assert table.split("\n\n")[0] == comparison(rows).split("\n\n")[0]  # the rows, as the runs directory has them
    # the need is kept too, so the table says what the whole study cost, the teacher included
    assert (kept / "needs" / "teacher" / "metrics.json").is_file() and "| needs/teacher | teacher | - |" in table
    after = json.loads((kept / "lr_low_seed1" / "metrics.json").read_text())["seconds_after_training"]
    assert after["held_out_eval"] > 0 and after["bench"] == 0.0  # bench.enabled=false
    assert "| lr_high | 2 |" in table and "| lr_low | 2 |" in table  # means over the two seeds

    # a second call runs nothing: every run is finished
    stamps = {p: p.stat().st_mtime_ns for p in rows.rglob("metrics.json")}
    capsys.readouterr()
    assert main([str(path)]) == 0
    assert {p: p.stat().st_mtime_ns for p in rows.rglob("metrics.json")} == stamps
    assert capsys.readouterr().err.count(" done (") == 5

    # an unfinished run (here: its metrics.json gone, its checkpoints there) resumes instead of stopping the study
    (rows / "lr_low_seed1" / "metrics.json").unlink()
    assert main([str(path)]) == 0
    assert "lr_low_seed1: python -m distill " in (err := capsys.readouterr().err) and "resume=true" in err
    assert json.loads((rows / "lr_low_seed1" / "metrics.json").read_text())["resumed_at_step"] > 0
    assert "resume" not in (rows / "lr_low_seed1" / "command.txt").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in rows.rglob("metrics.json")}

    # a finished run made with other settings is not passed off as this study's: the study stops before any run
    path.write_text(path.read_text().replace("train.max_steps=6", "train.max_steps=8"))
    with pytest.raises(ConfigError, match=r"run teacher in .* other settings \(train.max_steps: 6 there, 8 here\)"):
        main([str(path)])
    assert {p: p.stat().st_mtime_ns for p in rows.rglob("metrics.json")} == stamps

    # kept in parts from another runs root: the kept teacher stays the one the earlier rows used, and the run says so
    kept_teacher = (kept / "needs" / "teacher" / "config.yaml").read_text()
    capsys.readouterr()
    assert main([str(path), f"runs_root={tmp_path / 'other'}", "--rows", "lr_low", "--seeds", "1", "--keep", str(kept)]) == 0
    assert f"keeps {tmp_path / 'runs' / 'teacher' / 'sst2'}, which the study's earlier rows used" in capsys.readouterr().err
    assert (kept / "needs" / "teacher" / "config.yaml").read_text() == kept_teacher
    assert f"run_dir: {tmp_path / 'other'}/tiny/lr_low_seed1" in (kept / "lr_low_seed1" / "config.yaml").read_text()


def test_settings_compare_one_by_one_lists_of_values_whole_and_phases_counted(tmp_path):
    from omegaconf import OmegaConf

    from distill.config import compose_config
    from distill.rundir import config_changes

    base = ["stage=task", "task=rt_polarity"]
    OmegaConf.save(compose_config(base), tmp_path / "config.yaml")
    assert config_changes(tmp_path, compose_config(base), only_shared=True) == []
    # a list of plain values growing from empty is a change, not a key only one side has
    frozen = compose_config(base + ["stage.phases.0.freeze=[word_embeddings]"])
    assert config_changes(tmp_path, frozen, only_shared=True) == [("stage.phases.0.freeze", [], ["word_embeddings"])]
    # so is a phase added or removed, though its settings are keys only one side has
    one = compose_config(base + ["recipe=fast"])
    assert (len(one.stage.phases), len(frozen.stage.phases)) == (1, 2)
    changes = {k: (a, b) for k, a, b in config_changes(tmp_path, one, only_shared=True)}
    assert changes["stage.phases (entries)"] == (2, 1)


def test_a_bad_study_fails_before_any_run(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rows:\n  a: [stage.phases.0.lr=oops]\ncommon: [\"runs_root=" + str(tmp_path / "runs") + "\"]\n")
    with pytest.raises(ConfigError, match=r"study bad: run a_seed|study bad: run a: .*stage.phases.0.lr"):
        main([str(path)])
    assert not (tmp_path / "runs").exists()
    path.write_text("rowz: {}\n")
    with pytest.raises(ConfigError, match="rowz"):
        Study.load(str(path))


def test_rows_and_seeds_pick_runs_of_the_study_and_nothing_else(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(STUDY.format(path=path, data="d", runs="r", teacher="t"))
    assert main([str(path), "--list", "--rows", "lr_high", "--seeds", "2"]) == 0
    listed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["teacher", "lr_high_seed2"]  # the needs always come first
    study = Study.load(str(path))
    assert [name for name, _, row in study.runs([], seeds=[1]) if row] == ["lr_low_seed1", "lr_high_seed1"]
    assert "train.seed=1" in study.runs([], ["lr_low"], [1])[-1][1]
    with pytest.raises(ConfigError, match=r"--seeds 3: not a seed of study tiny; its seeds: 1, 2"):
        main([str(path), "--list", "--seeds", "1,3"])
    with pytest.raises(ConfigError, match=r"--seeds one: give whole numbers"):
        main([str(path), "--list", "--seeds", "one"])
    with pytest.raises(ConfigError, match=r"--rows lr_mid: not a row of study tiny; its rows: lr_low, lr_high"):
        main([str(path), "--list", "--rows", "lr_mid"])


def test_every_shipped_study_composes():
    for path in sorted((Path(__file__).parents[1] / "distill" / "studies").glob("*.yaml")):
        study = Study.load(path.stem)
        assert study.question and study.rule and study.rows, path
        assert path.read_text().startswith(f"# python -m distill study {path.stem}"), path
        from distill.config import compose_config

        for name, overrides, _ in study.runs(["task.data_dir=/nonexistent"]):
            compose_config(overrides)


def test_python_m_distill_study_through_the_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "distill", "study", "no_such_study"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: study 'no_such_study' not found")
