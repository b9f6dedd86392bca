"""``python -m distill``: the one command (``distill.cli``); with no subcommand, run a stage:
``python -m distill stage=<teacher|general|augment|task|eval> [task=...] [student=...] [key=value ...]``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from distill.cli import report_error
from distill.config import Config
from distill.errors import ConfigError, DistillError


def recipes():
    # imported lazily: `--help` and `--cfg job` stay fast
    from recipes import augment, general, task, teacher
    from recipes import eval as eval_stage

    return {"teacher": teacher.run, "general": general.run, "augment": augment.run, "task": task.run, "eval": eval_stage.run}


def run(cfg: DictConfig | Config) -> dict:
    """Run the stage ``cfg.stage.name`` names; tests call this with a composed config."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_object(cfg)
    stages = recipes()
    if cfg.stage.name not in stages:
        raise ConfigError(f"stage.name='{cfg.stage.name}' is unknown; use one of {', '.join(stages)}")
    return stages[cfg.stage.name](cfg)


def _sweep_member() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def skip_member(cfg: DictConfig, err: Exception) -> None:
    """A sweep member that cannot be built (bad shape, ...): ``skipped.json`` in its run directory says why,
    for ``distill.report``, and the sweep goes on with the other members."""
    from hydra.core.hydra_config import HydraConfig

    from distill.files import write_json

    reason = " ".join(str(err).splitlines())
    write_json(Path(cfg.run_dir) / "skipped.json", {"reason": reason, "overrides": list(HydraConfig.get().overrides.task)})
    print(f"skipped: {reason}", file=sys.stderr)


# an absolute path: Hydra resolves a relative one against the calling module, which differs between
# `python -m distill` (this file as __main__) and distill.cli importing it
CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def stage_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except DistillError as err:  # here, not in distill.cli: Hydra would print its own traceback first
        if isinstance(err, ConfigError) and _sweep_member():
            return skip_member(cfg, err)
        sys.exit(report_error(err))


if __name__ == "__main__":
    from distill.cli import main

    sys.exit(main())
