"""The package's shape: no import circles (counting imports inside functions, and a package that imports its
submodules by listing them), and nothing installed beside ``distill``."""

import ast
from pathlib import Path

import distill

ROOT = Path(distill.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.Attribute) and node.attr == "iter_modules":  # imports every submodule
                deps |= {m for m in modules if m.startswith(name + ".") and m.count(".") == name.count(".") + 1}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_import_circles():
    graph, circles = import_graph(), []

    def visit(node, path):
        for dep in graph[node]:
            if dep in path:
                circles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif len(path) < 15:
                visit(dep, [*path, dep])

    for start in graph:
        visit(start, [start])
    assert not circles, sorted(set(circles))[:5]
    # the checks stay light: they reach the terms (torch) only inside functions
    assert "distill.terms" in graph["distill.checks"] and "distill.cli" not in graph["distill.stage_command"]


def test_only_distill_is_installed():
    pyproject = (ROOT.parent / "pyproject.toml").read_text()
    assert 'include = ["distill*"]' in pyproject and not (ROOT.parent / "recipes").exists()
    assert (ROOT / "conf" / "config.yaml").is_file() and '"conf/**/*.yaml"' in pyproject
