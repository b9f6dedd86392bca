"""Every YAML in distill/conf/ composes with every stage, and validates."""

from pathlib import Path

import pytest
import distill.conf
from distill.checks import problems
from distill.config import compose_config

CONF = Path(distill.conf.__file__).parent
GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("stage", "task", "student", "teacher", "recipe")}
# a recipe chooses its own stage: it is composed alone (stage=None)
COMBOS = [(stage, group, option) for stage in GROUPS["stage"] for group in ("task", "student", "teacher") for option in GROUPS[group]] \
    + [(None, "recipe", option) for option in GROUPS["recipe"]]


@pytest.mark.parametrize("stage, group, option", COMBOS)
def test_every_config_composes_with_every_stage(stage, group, option, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")  # what stage=eval scores
    obj = compose_config([*([f"stage={stage}"] if stage else []), f"{group}={option}", f"task.data_dir={tmp_path}",
                          f"model={tmp_path / 'model'}"])
    # augment builds data and eval scores a model: no phases
    assert obj.stage.name == (stage or obj.stage.name) and (obj.stage.phases or obj.stage.name in ("augment", "eval"))
    # tmp_path has no data files, and no general stage has run: what is missing on disk, not in the config
    found = [p for p in problems(obj) if "does not exist" not in p and "would start a random student" not in p]
    assert not found, found
    assert obj.run_dir.startswith("runs/" + obj.stage.name)


def test_each_yaml_opens_with_its_command():
    for path in CONF.rglob("*.yaml"):
        lines = [line for line in path.read_text().splitlines() if not line.startswith("# @package")]
        assert lines[0].startswith("# python -m distill"), path


def test_base_teacher_restates_fasts_phase_with_its_own_learning_rate_alone():
    """recipe=base_teacher restates recipe=fast's phase (a Hydra list is replaced whole) to lower its peak rate
    (mpnet_lr): with that rate put back, the two recipes compose to the same phases, so a change to fast's phase
    that base_teacher's copy misses fails here."""
    base = compose_config(["recipe=base_teacher"])
    fast = compose_config(["recipe=fast", f"stage.phases.0.lr={base.stage.phases[0].lr}"])
    assert base.stage.phases[0].lr == 1.0e-4 != compose_config(["recipe=fast"]).stage.phases[0].lr
    assert base.stage.phases == fast.stage.phases
