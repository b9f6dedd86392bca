"""The five stages, one module each: what ``stage.name`` runs (``python -m distill stage=<name>``).

Each module's ``run(cfg) -> dict`` wires the components in ``distill/`` (data, teacher, student,
objective, trainer) for that stage and returns its metrics. Presets that change a stage's settings
(``recipe=fast``, ``recipe=distilbert``, ...) are configs in ``distill/conf/recipe``, not code.
"""

from __future__ import annotations

import importlib

from omegaconf import DictConfig, OmegaConf

from distill.config import Config
from distill.errors import ConfigError

# stage.name: the module under distill.stages that runs it
STAGES = ("teacher", "general", "augment", "task", "eval")


def run(cfg: DictConfig | Config) -> dict:
    """Run the stage ``cfg.stage.name`` names; tests call this with a composed config."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_object(cfg)
    if cfg.stage.name not in STAGES:
        raise ConfigError(f"stage.name='{cfg.stage.name}' is unknown; use one of {', '.join(STAGES)}")
    # imported here, not at the top: `--help` and `--cfg job` stay fast
    stage = importlib.import_module(f"distill.stages.{cfg.stage.name}")
    try:
        return stage.run(cfg)
    except BaseException:  # an error or Ctrl-C before the first checkpoint: overwrite=true's previous run comes back
        from distill.rundir import restore_previous

        restore_previous(cfg.run_dir)
        raise
