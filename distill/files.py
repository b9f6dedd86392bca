"""Writing results so that a kill at any moment leaves the old file or the new one, never half of one.

Every result, model, checkpoint and cache distill writes goes through these two helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, value) -> Path:
    return write_text(path, json.dumps(value, indent=2) + "\n")


@contextmanager
def building_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; when the block ends without an error it replaces
    ``target`` whole (an existing ``target`` is removed only after the new one is in place), else it is deleted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp"))
    try:
        yield work
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned plain-text columns under a header and a rule (what the benchmarks print)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header, tuple("-" * w for w in widths), *rows])
