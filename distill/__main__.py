"""``python -m distill stage=<teacher|general|augment|task|eval> [task=...] [student=...] [key=value ...]``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

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


def _sweep_member() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def skip_member(cfg: DictConfig, err: Exception) -> None:
    """A sweep member that cannot be built (bad shape, ...): ``skipped.json`` in its run directory says why,
    for ``distill.report``, and the sweep goes on with the other members."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    reason = " ".join(str(err).splitlines())
    (run_dir / "skipped.json").write_text(json.dumps({"reason": reason, "overrides": list(HydraConfig.get().overrides.task)}) + "\n")
    print(f"skipped: {reason}", file=sys.stderr)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ConfigError as err:
        if _sweep_member():
            return skip_member(cfg, err)
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except FetchError as err:
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
