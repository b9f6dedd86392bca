"""distill: distil a frozen BERT-family teacher into a small ALBERT student. The command is ``python -m distill``
(``distill.cli``); the modules here are the library it wires together."""

import sys

# the command's subcommands: words -> the module whose ``main(argv) -> int`` parses the rest (distill.cli)
TOOLS = {("bench",): "distill.bench", ("bench", "train"): "distill.reference.bench_train",
         ("bench", "precision"): "distill.bench_precision", ("cache",): "distill.caches",
         ("convert", "albert-tf"): "distill.albert_tf", ("convert", "vocab"): "distill.rebase_vocab",
         ("export",): "distill.export", ("report",): "distill.report", ("study",): "distill.study"}


def _module_run() -> str | None:
    """The module given to ``python -m`` while this package is imported for it (sys.argv[0] is then "-m", and
    sys.orig_argv how Python was started), else None."""
    argv = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or "-m" not in argv[:-1]:
        return None
    module = argv[argv.index("-m") + 1]
    try:  # a module that does not exist is left to Python's own error
        from importlib.util import find_spec

        return module if find_spec(module) is not None else None
    except ImportError:
        return None


# `python -m distill.<module>` for a module that is not the command: say which command does that job instead of
# importing the module and exiting 0 with nothing done
if (_module := _module_run()) and _module.startswith("distill.") and _module != "distill.__main__":
    _use = {module: " ".join(words) for words, module in TOOLS.items()}.get(_module)
    print(f"error: {_module} is a library module, not a command; use: python -m distill {_use} ..." if _use else
          f"error: {_module} is a library module, not a command; python -m distill --help lists the commands",
          file=sys.stderr)
    sys.exit(2)
