"""Every command the README, docs/ and the configs' headers show still parses: stage overrides compose with the
config schema, subcommands exist and accept their arguments, studies load, scripts exist. A renamed key, group
option or flag fails here, not in a reader's terminal."""

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from distill import TOOLS
from distill.config import compose_config
from distill.study import Study

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "distill" / "conf").rglob("*.yaml")),
           *sorted((REPO / "distill" / "studies").glob("*.yaml"))]
# what a reader fills in
PLACEHOLDERS = {"$SST2": "/data/SST-2", "<your GLUE SST-2 directory>": "/data/SST-2", "<student>": "L2_H32",
                "<runs dir>": "runs", "<model dir>": "runs/m/model", "<model dirs>": "runs/m/model"}


def lines_of(path: Path) -> list[str]:
    """Command lines: fenced code and inline code in Markdown, the header comments of YAML, continuations joined."""
    text = path.read_text()
    if path.suffix == ".yaml":
        chunks = [line.lstrip("# ") for line in text.splitlines() if line.startswith("# ")]
    else:
        chunks = [block for block in re.findall(r"```bash\n(.*?)```", text, re.S)]
        chunks += re.findall(r"`((?:python -m distill|distill|bash scripts|python scripts)[^`]*)`", text)
    out = []
    for chunk in chunks:
        out += re.sub(r"\\\n\s*", " ", chunk).splitlines()
    return out


def commands(path: Path) -> list[list[str]]:
    found = []
    for line in lines_of(path):
        for part in re.split(r"&&|;|\|", line):
            # a comment, a redirection, or a remark in parentheses after two spaces ends the command
            part = re.split(r"\s#\s|\s>\s|^#|\s{2,}\(", part)[0].strip()
            for key, value in PLACEHOLDERS.items():
                part = part.replace(key, value)
            if re.match(r"(\.venv/bin/)?python -m distill\b|distill |accelerate launch -m distill |bash scripts/|python scripts/",
                        part) and "..." not in part and "<" not in part and " [-" not in part:  # a synopsis, not a command
                found.append(shlex.split(part))
    return found


ALL = [(path.relative_to(REPO), words) for path in SOURCES for words in commands(path)]


def test_the_docs_show_commands_of_every_kind():
    kinds = {words[0] if words[0] != "python" or words[1] != "-m" else words[2].split(" ")[0] for _, words in ALL}
    assert {"distill", "bash"} <= kinds and len(ALL) > 60, kinds


class Parsed(Exception):
    pass


def tool_accepts(module: str, args: list[str], monkeypatch) -> None:
    """Run the subcommand's own argument parsing, and stop there."""
    for name in ("parse_args", "parse_intermixed_args"):
        original = getattr(argparse.ArgumentParser, name)

        def parse(self, *a, _original=original, **k):
            _original(self, *a, **k)
            raise Parsed

        monkeypatch.setattr(argparse.ArgumentParser, name, parse)
    with pytest.raises(Parsed):
        importlib.import_module(module).main(args)


def stage_overrides(args: list[str]) -> list[str]:
    """The overrides one member of the run would get: flags dropped, a sweep's first value, Hydra's own keys and
    run_dir=${hydra:...} (resolved only inside a Hydra job) left out."""
    out = []
    for arg in args:
        if arg.startswith("-") or arg in ("job", "hydra") or arg.startswith("hydra.") or "${hydra:" in arg:
            continue
        key, _, value = arg.partition("=")
        if "," in value and not value.startswith(("[", "{")) and "glob(" not in value:
            value = value.split(",")[0]
        out.append(f"{key}={value}")
    return out


@pytest.mark.parametrize("source, words", ALL, ids=[f"{p}:{' '.join(w)[:60]}" for p, w in ALL])
def test_command_parses(source, words, monkeypatch):
    if words[0] in ("bash", "python") and words[1].startswith("scripts/"):
        assert (REPO / words[1]).is_file(), f"{source}: {words[1]} does not exist"
        return
    if words[0] == "accelerate":
        words = words[words.index("-m"):]
        words = ["python", *words]
    args = words[3:] if words[0].endswith("python") else words[1:]
    assert not words[2:3] or words[2] == "distill", f"{source}: python -m {words[2]} is not the command"
    for tool_words, module in sorted(TOOLS.items(), key=lambda item: -len(item[0])):
        if tuple(args[:len(tool_words)]) == tool_words:
            rest = args[len(tool_words):]
            if not rest:  # the subcommand named in prose, not a command line
                return
            if tool_words == ("study",):
                names = [a for a in rest if not a.startswith("-") and "=" not in a]
                study = Study.load(names[0])
                for _, overrides, _ in study.runs([a for a in rest if "=" in a]):
                    compose_config(overrides)
            tool_accepts(module, rest, monkeypatch)
            return
    compose_config(stage_overrides(args))


def test_no_doc_names_a_library_module_as_a_command():
    for path in SOURCES:
        assert not re.search(r"python -m distill\.\w", path.read_text()), f"{path}: use python -m distill <subcommand>"


def test_the_readme_results_blocks_are_what_their_kept_runs_say():
    """A README table of results is rebuilt from the runs' metrics.json files (python scripts/readme_results.py);
    a figure edited by hand, or a run re-kept without rebuilding, fails here."""
    from distill.report import update_blocks

    results = REPO / "docs" / "mpnet_results.md"  # the README's results page (the README links to it)
    text = results.read_text()
    assert text.count("<!-- /front -->") >= 1 and text.count("<!-- /ablation -->") >= 1
    assert "](../results/mpnet_front/report.png)" in text  # the plot's link resolves from docs/
    for path in SOURCES:  # the README and every doc page with a block
        page = path.read_text()
        assert update_blocks(page, REPO, write=False, page_dir=path.parent) == page, f"{path}: rebuild its results"
    first = re.compile(r"\| (\d+\.\d)% \|").search(text, text.index("<!-- front:"))
    edited = text[:first.start(1)] + f"{float(first[1]) + 0.1:.1f}" + text[first.end(1):]
    assert update_blocks(edited, REPO, write=False, page_dir=results.parent) != edited
