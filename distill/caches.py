"""``python -m distill cache list|clear``: the teacher caches distill keeps, their sizes, and removing them.

The teacher's stored outputs (distill/teacher_cache.py): ``teacher_layers-<key>`` (mapped layers, the large
ones), ``teacher_qkv-<key>`` (one layer's Q, K, V) and ``teacher_logits-<key>``. A sweep or a second run reads
them instead of running the teacher, and they are never evicted on their own. The tokenized data are ``datasets`` cache files beside the data
(``Dataset.cleanup_cache_files``)."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from distill.data import cache_root
from distill.errors import ConfigError


def _size(path: Path) -> int:
    """Bytes on disk (the stores' files are sparse: only what was written takes space)."""
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    return sum(f.stat().st_blocks * 512 for f in files)


def entries(root: Path) -> list[dict]:
    """Every cache under ``root``: name, bytes, last modified, and for layer caches what they hold."""
    out = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.endswith(".lock"):
            continue
        entry = {"name": path.name, "bytes": _size(path), "modified": time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))}
        meta = path / "meta.json"
        if meta.is_file():
            m = json.loads(meta.read_text())
            filled = path / "filled.npy"
            stored = int(np.load(filled).sum()) if filled.is_file() else 0
            layers = (f", hidden {m['hidden_layers']}, scores {m['score_layers']}" if "hidden_layers" in m
                      else f", Q/K/V of layer {m['qkv_layer']}" if "qkv_layer" in m else ", logits")
            entry["holds"] = f"{stored} of {m['examples']} examples{layers}"
        elif path.name.startswith("."):
            entry["holds"] = "an unfinished build"
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill cache", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="each cache with its size")
    clear = sub.add_parser("clear", help="remove the named caches, or all of them")
    clear.add_argument("names", nargs="*", help="names from `cache list`")
    clear.add_argument("--all", action="store_true", help="remove every cache")
    args = parser.parse_args(argv)
    root = cache_root()
    found = entries(root)
    if args.command == "list":
        for e in found:
            print(f"{e['bytes'] / 2**20:10.1f} MiB  {e['modified']}  {e['name']}  {e.get('holds', '')}".rstrip())
        print(f"{sum(e['bytes'] for e in found) / 2**20:10.1f} MiB in {len(found)} caches under {root}")
        return 0
    if not args.names and not args.all:
        raise ConfigError("cache clear: name the caches to remove (python -m distill cache list) or pass --all")
    unknown = sorted(set(args.names) - {e["name"] for e in found})
    if unknown:
        raise ConfigError(f"cache clear: no cache named {', '.join(unknown)} under {root}; python -m distill cache list names them")
    freed = 0
    for e in found:
        if args.all or e["name"] in args.names:
            path = root / e["name"]
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            freed += e["bytes"]
            print(f"removed {e['name']}")
    print(f"freed {freed / 2**20:.1f} MiB")
    return 0
