"""``python -m distill stage=<teacher|general|augment|task|eval> [task=...] [student=...] [key=value ...]``."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from distill.assets import FetchError
from distill.config import Config, ConfigError
from distill.trainer import Interrupted, NonFiniteLoss

log = logging.getLogger("distill")


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (ConfigError, FetchError) as err:
        # bad input is the user's to fix: say what and how, no stack trace
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLoss as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    except Interrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
