"""Every error a user can cause or meet, in one hierarchy.

``distill.cli`` catches ``DistillError`` in one place for every command: it
prints the message (one line per problem, prefixed ``error:``), no stack
trace, and exits with the class's ``exit_code`` (``report_error``). Anything else is a bug in
distill and keeps its traceback.
"""

import sys


class DistillError(Exception):
    """An error whose message tells the user what to fix; the command exits with ``exit_code``."""

    exit_code = 2
    prefix = "error"


class ConfigError(DistillError, ValueError):
    """Bad input (config, data, checkpoint, command-line arguments): each line names a field or file and the fix."""


class LayerMapError(ConfigError):
    """A layer map G(m) that cannot map this student onto this teacher."""


class FetchError(DistillError):
    """An offline asset could not be fetched from the package registry."""


class DiskSpaceError(DistillError):
    """Not enough free disk for a cache that is about to be written; nothing was written."""


class ExportError(DistillError):
    """ONNX export, quantisation or benchmarking could not be done (missing extra, bad model directory, parity)."""


class NonFiniteLoss(DistillError, RuntimeError):
    """Training produced a non-finite loss: the message names the phase, step, term and last good checkpoint."""

    exit_code = 3


class Interrupted(DistillError, RuntimeError):
    """SIGINT/SIGTERM arrived: a checkpoint was saved; the message says how to resume."""

    exit_code = 130
    prefix = "interrupted"


def report_error(err: DistillError) -> int:
    """Print ``err`` as ``error: ...`` lines on stderr; the exit code to leave with."""
    for line in str(err).splitlines() or [type(err).__name__]:
        print(f"{err.prefix}: {line}", file=sys.stderr)
    return err.exit_code
