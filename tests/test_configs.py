"""Every YAML in conf/ composes with every stage, and validates."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from distill.checks import problems

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("stage", "task", "student", "teacher", "recipe")}
COMBOS = [(stage, group, option) for stage in GROUPS["stage"] for group in ("task", "student", "teacher", "recipe") for option in GROUPS[group]]


@pytest.mark.parametrize("stage, group, option", COMBOS)
def test_every_config_composes_with_every_stage(stage, group, option, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")  # what stage=eval scores
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"stage={stage}", f"{group}={option}", f"task.data_dir={tmp_path}",
                                           f"model={tmp_path / 'model'}"])
    obj = OmegaConf.to_object(cfg)
    # augment builds data and eval scores a model: no phases
    assert obj.stage.name in stage and (obj.stage.phases or obj.stage.name in ("augment", "eval"))
    # tmp_path has no data files, and no general stage has run: what is missing on disk, not in the config
    found = [p for p in problems(obj) if "does not exist" not in p and "would start a random student" not in p]
    assert not found, found
    assert obj.run_dir.startswith("runs/" + obj.stage.name)


def test_each_yaml_opens_with_its_command():
    for path in CONF.rglob("*.yaml"):
        lines = [line for line in path.read_text().splitlines() if not line.startswith("# @package")]
        assert lines[0].startswith("# python -m distill"), path
