"""distill: distil a frozen BERT-family teacher into a small ALBERT student. The command is ``python -m distill``
(``distill.cli``); the modules here are the library it wires together."""

import sys

# `python -m distill.<module>` for a module that is not the command: say which command does that job instead of
# importing the module and exiting 0 with nothing done (sys.orig_argv is how Python was started; while the
# package is imported for -m, sys.argv[0] is "-m")
COMMANDS = {"distill.report": "report", "distill.bench": "bench", "distill.reference.bench_train": "bench train",
            "distill.export": "export", "distill.caches": "cache"}


def _module_run() -> str | None:
    argv = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or "-m" not in argv[:-1]:
        return None
    return argv[argv.index("-m") + 1]


if (_module := _module_run()) and _module.startswith("distill.") and _module != "distill.__main__":
    _use = COMMANDS.get(_module)
    print(f"error: {_module} is a library module, not a command; use: python -m distill {_use} ..." if _use else
          f"error: {_module} is a library module, not a command; python -m distill --help lists the commands",
          file=sys.stderr)
    sys.exit(2)
