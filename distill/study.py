"""Run a study, a list of runs written down as one YAML file (``distill/studies/<name>.yaml``), and its table.

``python -m distill study <name or file> [key=value ...] [--keep results/<name>] [--rows A,B] [--seeds 1,2] [--list]``.

A study file holds its question and the rule that decides it (written before the runs), the overrides
common to every run, the runs it needs first (``needs``: e.g. the teacher, at its default run directory),
and its rows: one run each, ``<runs_root>/<study>/<row>[_seed<N>]``. A run whose ``metrics.json`` exists
is not run again and an unfinished one resumes from its last checkpoint, so an interrupted study continues where it
stopped; a finished run made with other settings stops the study before anything runs. Each run directory keeps
the command that made it (``command.txt``) beside its ``config.yaml``. ``--keep results/<name>`` copies what each row's
figures need there (``distill.report.keep_run``: ``metrics.json``, ``config.yaml``, ``command.txt``, ``log.jsonl``,
...), and the needs' under ``needs/`` (a need kept there from another run directory stays: the earlier rows
used it), and writes the table (``table.md``) from those copies alone, which
``python -m distill report --compare results/<name>`` rebuilds: the rows, then where every run's wall time went and
what the whole study took.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from distill.config import compose_config
from distill.errors import ConfigError, DistillError
from distill.files import write_text

STUDIES = Path(__file__).parent / "studies"


@dataclass
class Study:
    name: str
    question: str = ""
    rule: str = ""
    # overrides every run (needs and rows) gets, and every row gets
    common: list[str] = field(default_factory=list)
    row_common: list[str] = field(default_factory=list)
    # runs made first, at their own run_dir, when missing: name -> overrides
    needs: dict[str, list[str]] = field(default_factory=dict)
    # name -> overrides; each run at <runs_root>/<study>/<row>, or <row>_seed<N> for each of ``seeds``
    rows: dict[str, list[str]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, name_or_path: str) -> Study:
        path = Path(name_or_path)
        if not path.suffix:
            path = STUDIES / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in STUDIES.glob("*.yaml")))
            raise ConfigError(f"study '{name_or_path}' not found; use one of {known}, or a path to a study YAML file")
        try:
            raw = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(cls(name=path.stem)), OmegaConf.load(path)))
        except Exception as err:  # a typo'd key or a wrong type: name the file and the key
            raise ConfigError(f"{path}: {' '.join(str(err).split())}") from None
        return cls(**raw)

    def runs(self, extra: list[str], only: list[str] | None = None,
             seeds: list[int] | None = None) -> list[tuple[str, list[str], bool]]:
        """(name, overrides, is a row) of every run in order: needs first, then each row (of ``only``, when given) at
        each seed (of ``seeds``, when given)."""
        if unknown := sorted(set(only or []) - set(self.rows)):
            raise ConfigError(f"--rows {','.join(unknown)}: not a row of study {self.name}; its rows: {', '.join(self.rows)}")
        # only the study's own seeds: its rule was written for them, and its table's means are over them
        if unknown := sorted(set(seeds or []) - set(self.seeds)):
            raise ConfigError(f"--seeds {','.join(map(str, unknown))}: not a seed of study {self.name}; its seeds: "
                              f"{', '.join(map(str, self.seeds)) or 'none (each row runs once, at the config seed)'}")
        out = [(name, [*self.common, *overrides, *extra], False) for name, overrides in self.needs.items()]
        for row, overrides in self.rows.items():
            if only and row not in only:
                continue
            for seed in [s for s in self.seeds if not seeds or s in seeds] or [None]:
                name = row if seed is None else f"{row}_seed{seed}"
                seeded = [f"train.seed={seed}"] if seed is not None else []
                out.append((name, [*self.common, *self.row_common, *overrides, *seeded, *extra,
                                   f"run_dir=${{runs_root}}/{self.name}/{name}"], True))
        return out


def _compose(study: Study, name: str, overrides: list[str]):
    from distill.stage_command import override_error

    try:
        return compose_config(overrides)
    except Exception as err:  # what Hydra cannot apply, in one line
        raise ConfigError(f"study {study.name}: run {name}: {override_error(err, overrides)}") from None


def _check_done_run(study: Study, name: str, cfg) -> None:
    """A finished run is reused only if it was made with this run's settings (a teacher trained for 800 steps
    must not stand in for the 4,000 a study asks for)."""
    from distill.rundir import config_changes

    run_dir = Path(cfg.run_dir)
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "config.yaml").is_file():
        return
    if changes := config_changes(run_dir, cfg, only_shared=True):
        shown = ", ".join(f"{k}: {old!r} there, {new!r} here" for k, old, new in changes[:3])
        raise ConfigError(f"study {study.name}: run {name} in {run_dir} was made with other settings ({shown}); give "
                          f"the study another runs_root=, or move {run_dir} aside to run it again")


def _kept_from_elsewhere(kept: Path, cfg) -> str | None:
    """The run directory a need already kept at ``kept`` came from, when it is not this study's (a study kept in
    parts from two runs roots): that need is what the earlier kept rows used, so ``--keep`` must not swap it."""
    if not (kept / "config.yaml").is_file():
        return None
    source = OmegaConf.load(kept / "config.yaml").get("run_dir")
    return str(source) if source and Path(str(source)) != Path(cfg.run_dir) else None


def shell(overrides: list[str]) -> str:
    """The command line that runs these overrides, quoted for a shell."""
    return shlex.join(["python", "-m", "distill", *overrides])


def run_study(study: Study, extra: list[str], keep: Path | None = None, only: list[str] | None = None,
              seeds: list[int] | None = None) -> Path:
    """Run what is missing, then the table; returns the directory the rows live in."""
    # every run composed before the first starts: a bad override fails the study at once
    planned = [(name, overrides, row, _compose(study, name, overrides))
               for name, overrides, row in study.runs(extra, only, seeds)]
    for name, _, _, cfg in planned:
        _check_done_run(study, name, cfg)
    kept_elsewhere = {name: kept for name, _, row, cfg in planned
                      if keep is not None and not row and (kept := _kept_from_elsewhere(keep / "needs" / name, cfg))}
    for name, kept in kept_elsewhere.items():
        print(f"{study.name}: {keep / 'needs' / name} keeps {kept}, which the study's earlier rows used; it stays, and "
              f"the rows run now say in their config.yaml which {name} they used", file=sys.stderr)
    for name, overrides, _, cfg in planned:
        run_dir = Path(cfg.run_dir)
        if (run_dir / "metrics.json").is_file():
            print(f"{study.name}: {name} done ({run_dir})", file=sys.stderr)
            continue
        # an interrupted run continues from its last checkpoint (from the start when it has none); command.txt keeps
        # the command that makes the run from scratch
        resume = ["resume=true"] if run_dir.is_dir() and any(run_dir.iterdir()) else []
        command = [sys.executable, "-m", "distill", *overrides, *resume]
        print(f"{study.name}: {name}: {shell([*overrides, *resume])}", file=sys.stderr)
        code = subprocess.run(command).returncode
        if code != 0:
            raise DistillError(f"study {study.name}: run {name} failed (exit {code}; its messages are above); the finished "
                               f"runs are kept: run the study again once it is fixed")
        write_text(run_dir / "command.txt", shell(overrides) + "\n")
    from distill.report import comparison, keep_run

    rows = [(name, Path(cfg.run_dir)) for name, _, row, cfg in planned if row]
    table_dir = rows[0][1].parent
    if keep is not None:
        for name, run_dir in rows:
            keep_run(run_dir, keep / name)
        # the runs the rows needed (the teacher...), for the time the whole study took (report.stage_times)
        for name, _, row, cfg in planned:
            if not row and name not in kept_elsewhere:
                keep_run(Path(cfg.run_dir), keep / "needs" / name)
        table_dir = keep
    table = comparison(table_dir)
    if keep is not None:
        write_text(keep / "table.md", f"# {study.name}\n\n{study.question}\n\nRule: {study.rule.strip()}\n\n{table}\n")
    print(table)
    return table_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill study", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study name (distill/studies/<name>.yaml) or a study YAML file")
    parser.add_argument("overrides", nargs="*", help="overrides for every run, e.g. runs_root=runs/exp")
    parser.add_argument("--keep", help="copy what each row's figures need here (distill.report.keep_run), and its table")
    parser.add_argument("--rows", help="run only these rows (comma-separated), and the needs")
    parser.add_argument("--seeds", help="run only these of the study's seeds (comma-separated), e.g. --seeds 1")
    parser.add_argument("--list", action="store_true", help="print the runs and their commands, run nothing")
    args = parser.parse_intermixed_args(argv)  # overrides and options in any order
    study = Study.load(args.study)
    only = args.rows.split(",") if args.rows else None
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds}: give whole numbers separated by commas, e.g. --seeds 1,2") from None
    if args.list:
        for name, overrides, _ in study.runs(args.overrides, only, seeds):
            print(f"{name}: {shell(overrides)}")
        return 0
    run_study(study, args.overrides, Path(args.keep) if args.keep else None, only, seeds)
    return 0
