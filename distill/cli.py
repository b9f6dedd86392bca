"""The one ``distill`` command: ``python -m distill`` (or ``distill`` once installed).

- ``python -m distill [stage=...] [key=value ...]``: run a stage, configured by Hydra overrides of
  ``distill/conf`` (``-m`` sweeps, ``--help`` lists the config groups, ``--cfg job`` prints the config).
- ``python -m distill bench <model dirs> ...``: latency, parameters and FLOPs of saved classifiers;
  ``python -m distill bench train ...``: training throughput against the TinyBERT setup;
  ``python -m distill bench precision <model dir> --data ...``: whether bf16 autocast pays on this CPU.
- ``python -m distill export onnx <model dir> ...``: ONNX export, parity check, int8.
- ``python -m distill report <runs dir> ...``: a sweep's table, CSV and Pareto plot.
- ``python -m distill cache list|clear``: the teacher caches and their sizes; removing them.
- ``python -m distill convert albert-tf <checkpoint> <output dir>``: a Google ALBERT or albert_zh TensorFlow
  checkpoint as a Hugging Face ALBERT directory (for ``stage.init.albert_dir``), without TensorFlow.
- ``python -m distill convert vocab <source> <tokenizer> <output dir>``: an encoder reading another tokenizer's
  vocabulary (rows matched by token string), to teach a student that must keep that vocabulary.
- ``python -m distill study <name> [key=value ...] [--keep results/<name>]``: a study (distill/studies/<name>.yaml):
  its runs, each skipped when finished, and its comparison table.

The subcommands and their modules are ``distill.TOOLS``. Every command reports errors the same way, here and
only here: a ``DistillError`` prints one
``error: ...`` line per problem (no stack trace) and exits with its ``exit_code`` (2 bad input,
3 non-finite loss, 130 interrupted); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from distill import TOOLS
from distill.errors import DistillError, report_error


def exit_code(run: Callable[[], int | None]) -> int:
    """Run a command; a DistillError becomes its message on stderr and its exit code."""
    try:
        return run() or 0
    except DistillError as err:
        return report_error(err)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for words in sorted(TOOLS, key=len, reverse=True):  # the longest match: `bench train` before `bench`
        if tuple(argv[:len(words)]) == words:
            tool = importlib.import_module(TOOLS[words])
            return exit_code(lambda: tool.main(argv[len(words):]))
    from distill.stage_command import stage_command  # reports its errors with report_error (inside Hydra's job)

    sys.argv = [sys.argv[0], *argv]  # Hydra reads its overrides from sys.argv
    # Hydra raises what it cannot compose instead of printing a traceback and exiting 1: stage_command makes it one line
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    return exit_code(lambda: stage_command([a for a in argv if not a.startswith("-")]))
