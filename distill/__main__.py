"""``python -m distill``: the one command, ``distill.cli`` (the same as the installed ``distill``)."""

import sys

from distill.cli import main

if __name__ == "__main__":
    sys.exit(main())
