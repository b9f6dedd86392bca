"""Running a stage from the command line: Hydra composes the config from ``distill/conf`` and the
overrides, and anything it cannot apply (a key into a list, a wrong type, an unknown key or option)
becomes one ``error:`` line and exit code 2 instead of Hydra's traceback."""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import hydra
from omegaconf import DictConfig

from distill.config import CONFIG_MODULE, Config, TrainConfig
from distill.errors import ConfigError, DistillError, report_error
from distill.stages import run


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


# set once Hydra has composed the config and handed it to the job: an exception before that is a bad override
JOB_STARTED = []


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def stage_main(cfg: DictConfig) -> None:
    JOB_STARTED.append(True)
    try:
        run(cfg)
    except DistillError as err:  # here, not in distill.cli: Hydra would print its own traceback first
        if isinstance(err, ConfigError) and _sweep_member():
            return skip_member(cfg, err)
        sys.exit(report_error(err))


def _list_index_problem(override: str) -> str | None:
    """``stage.phases.max_steps=8``: a key into a list that is not an index (OmegaConf answers with a bare
    ValueError); the fix, naming the index to use and a field of the same name under ``train`` if there is one."""
    key, _, value = override.lstrip("+~").partition("=")
    parts, node = key.split("."), Config
    for i, part in enumerate(parts):
        if dataclasses.is_dataclass(node):
            hints = typing.get_type_hints(node)
            if part not in hints:
                return None
            node = hints[part]
        elif typing.get_origin(node) is list and i < len(parts):
            if part.isdigit():
                node = typing.get_args(node)[0]
                continue
            where, rest = ".".join(parts[:i]), ".".join(parts[i:])
            also = f", or train.{rest}={value} for every phase" if rest in typing.get_type_hints(TrainConfig) else ""
            return f"{override}: {where} is a list; index it ({where}.0.{rest}={value} for the first){also}"
        else:
            return None
    return None


def override_error(err: Exception, overrides: list[str]) -> ConfigError:
    """The one-line error for an override Hydra could not apply (a key into a list, a wrong type, an unknown key
    or option), instead of Hydra's traceback: what was wrong and how to fix it, exit code 2."""
    for override in overrides:
        if "=" in override and (problem := _list_index_problem(override)):
            return ConfigError(problem)
    lines: list[str] = []
    for e in (err, err.__cause__):
        for line in str(e or "").splitlines():
            line = line.strip().rstrip(".")
            if not line or line.startswith(("Set the environment", "full_key", "object_type", "reference_type",
                                            "Config search path", "provider=", "To append to your config")):
                continue
            if lines and "options in" in lines[-1]:  # "Available options in 'task':" and its list, on one line
                lines[-1] += (" " if lines[-1].endswith(":") else ", ") + line
            elif line not in lines:
                lines.append(line)
    return ConfigError(f"{'; '.join(lines) or type(err).__name__}; python -m distill --cfg job shows every key and its type")


def stage_command(overrides: list[str]) -> None:
    """Run a stage through Hydra, turning an override Hydra cannot apply into one line (``override_error``)."""
    try:
        stage_main()
    except Exception as err:
        if JOB_STARTED:  # the job itself failed: a bug, with its traceback
            raise
        raise override_error(err, overrides) from None
