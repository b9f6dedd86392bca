"""Rebuild the results tables in the README and the doc pages from the kept runs' metrics.json files.

    python scripts/readme_results.py          # rewrite every results block, and each front's full report
    python scripts/readme_results.py --check  # exit 1 when a block differs from what its runs say (no writing)

A block is ``<!-- front: results/a results/b -> results/front -->`` ... ``<!-- /front -->``: the runs kept below
the directories (``python -m distill study <name> --keep results/<name>``) as one table, fastest first, and the
report (table, CSV, plot) written to the directory after ``->`` (``distill.report.update_blocks``). A block
``<!-- ablation: results/a/run results/a results/b -->`` ... ``<!-- /ablation -->``: every run kept below the
directories against the first run (the whole recipe), each with what its resolved config changes.
"""

import argparse
import sys
from pathlib import Path

from distill.report import RESULT_BLOCKS, update_blocks

REPO = Path(__file__).resolve().parents[1]


def pages() -> list[Path]:
    """The README and every doc page that holds a results block."""
    docs = sorted((REPO / "docs").rglob("*.md"))
    return [REPO / "README.md",
            *(p for p in docs for text in [p.read_text()] if any(block.search(text) for block in RESULT_BLOCKS))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path in pages():
        text = path.read_text()
        new = update_blocks(text, REPO, write=not args.check, page_dir=path.parent)
        if args.check:
            stale += [path] if new != text else []
        else:
            path.write_text(new)
            print(f"{path.relative_to(REPO)}: {sum(len(block.findall(new)) for block in RESULT_BLOCKS)} results block(s) rebuilt")
    if stale:
        sys.exit(f"{', '.join(map(str, stale))}: a results block differs from its runs; run python scripts/readme_results.py")
