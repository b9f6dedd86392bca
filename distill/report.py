"""How small can the student be? A sweep's (or any runs directory's) runs as a table and a plot.

``python -m distill report <runs dir> [<runs dir> ...] [--out DIR] [--bench SENTENCES.tsv]``
(``--compare``: a table of every task run instead, for recipe studies: see ``comparison``)

Reads every task-stage ``metrics.json`` under the directory (each a sweep member or any other
distillation run; several directories, e.g. the kept results of several studies with one teacher, make one
front, each run named with its directory's name first) and every ``skipped.json`` (a member that could not be built, with the reason),
and writes ``report.md``, ``report.csv`` and ``report.png`` into ``--out`` (default: the directory):

- one row per member: student shape, sharing, how it was initialised, total / non-embedding /
  unique parameters, CPU latency at batch 1 and 32, speed-up over the teacher, the held-out metric
  (on the split that chose nothing), % of the teacher's, training time, and whether the member is
  Pareto-optimal (no other member is at least as fast, or as small, and at least as good on the selection
  split: the front is a choice, so the split reported held out makes none of it);
- the plot: held-out metric against speed at batch 32 (the speed-up over the teacher when every run
  has one, else the latency) and against unique parameters, the Pareto front joined and marked, the teacher
  as a reference point;
- below the table, the other runs (teacher fine-tuning, general distillation: steps, time,
  throughput, held-out score) and every ``stage=eval`` result (``eval.json``) found.

Latencies are by default the task stage's own measurement (``distill.bench``: the member and its
teacher in one process, the same thread count, batch sizes and held-out sentences for every member),
taken in separate processes at different times, so about 10% of run-to-run noise separates members.
``--bench SENTENCES.tsv`` measures the teacher and every member again in this one process on those
sentences (``distill.bench.benchmark``), so their ratios compare directly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from distill.errors import ConfigError
from distill.files import write_text
from distill.rundir import RESUME_FREE, flat_settings

COLUMNS = ["run", "student", "sharing", "init", "params_total", "params_non_embedding", "params_unique",
           "latency_ms_b1", "latency_ms_b32", "speedup_b1", "speedup_b32", "metric", "select", "selected_on", "heldout",
           "reported_on",
           "teacher_heldout", "pct_of_teacher", "train_seconds", "pareto_latency", "pareto_params"]


def _init(m: dict) -> str:
    init = m.get("student_init") or {}
    if "general_student" in init:
        return "general student"
    parts = []
    if init.get("teacher_layers"):  # per student layer group, the teacher layers it was copied from
        parts.append("layers " + "/".join("+".join(map(str, g)) for g in init["teacher_layers"]))
    parts += [f"{k} {init[k]}" for k in ("embedding", "head") if init.get(k) and init[k] != "random"]
    return ", ".join(parts) or "random"


def _short(tag: str) -> str:
    """L3_H384_E384_A12_I768_noshare -> L3_H384_I768_noshare: the plot's point labels."""
    return "_".join(part for part in tag.split("_") if not part.startswith(("E", "A")))


def runs_below(root: Path, name: str) -> list[Path]:
    """Every ``name`` file below ``root``, outside hidden directories (a run set aside by overwrite=true in
    ``.previous``, an unfinished build)."""
    return sorted(p for p in root.rglob(name) if not any(part.startswith(".") for part in p.relative_to(root).parts))


# what --keep copies of each run (destination name: source below the run directory): its figures, its full config,
# the overrides or command that made it, its logged losses, its benchmark
KEPT = {"metrics.json": "metrics.json", "config.yaml": "config.yaml", "overrides.yaml": ".hydra/overrides.yaml",
        "command.txt": "command.txt", "log.jsonl": "log.jsonl", "bench.json": "bench.json"}


def found(roots: list[Path], name: str):
    """(file, run name) for every ``name`` file below each root: the name is its directory relative to the root,
    with the root's own name in front when there are several roots (one report over several studies)."""
    for root in roots:
        for path in runs_below(root, name):
            run = str(path.parent.relative_to(root))
            yield path, f"{root.name}/{run}" if len(roots) > 1 else run


def keep_run(run_dir: Path, dest: Path) -> None:
    """Copy what a run's figures need (``KEPT``, those it has) into ``dest``: a results folder stays readable and
    its tables rebuildable after the runs directory is gone."""
    for name, source in KEPT.items():
        if (run_dir / source).is_file():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / source, dest / name)


def keep_runs(root: Path, dest: Path) -> list[Path]:
    """``keep_run`` for every run below ``root``, at the same relative path below ``dest``."""
    runs = [path.parent for path in runs_below(root, "metrics.json") if "checkpoints" not in path.parts]
    for run_dir in runs:
        keep_run(run_dir, dest / run_dir.relative_to(root))
    return runs


def speed(value: float | None, spread: list | None = None) -> str:
    """``2.58x (2.41-2.70)``: the median speed-up over the benchmark's rounds and their min-max."""
    if value is None:
        return "-"
    return f"{value:.2f}x" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread and None not in spread else "")


def member(path: Path, run: str) -> dict | None:
    """One row from a task run's metrics.json (None for other stages)."""
    m = json.loads(path.read_text())
    if m.get("stage") != "task" or "eval" not in m:
        return None
    metric = next(iter(m["eval"]["student"]))
    heldout, teacher = m["eval"]["student"][metric], m["eval"]["teacher"][metric]
    latency, speedup, spread = m.get("latency_ms") or {}, m.get("speedup") or {}, m.get("speedup_range") or {}
    bench = path.parent / "bench.json"
    teacher_latency = {}
    if bench.is_file():
        report = json.loads(bench.read_text())
        teacher_latency = {f"b{r['batch_size']}": r["median_ms"] for r in report["results"]
                           if r["model_dir"] == report["reference"] and r["engine"] == "torch"}
    return {
        "run": run, "_dir": path.parent, "student": m["student"],
        "sharing": m["student"].rsplit("_", 1)[-1], "init": _init(m),
        "params_total": m["params"]["total"], "params_non_embedding": m["params"]["non_embedding"],
        "params_unique": m["params"]["unique"],
        "latency_ms_b1": latency.get("torch_batch1"), "latency_ms_b32": latency.get("torch_batch32"),
        "speedup_b1": speedup.get("torch_batch1"), "speedup_b32": speedup.get("torch_batch32"),
        "speedup_b1_range": spread.get("torch_batch1"), "speedup_b32_range": spread.get("torch_batch32"),
        "metric": metric, "select": m["eval"]["student_select"][metric], "selected_on": m["eval"]["selected_on"],
        "heldout": heldout, "reported_on": m["eval"]["reported_on"], "teacher_heldout": teacher,
        "pct_of_teacher": 100 * heldout / teacher if teacher else None, "train_seconds": m["train_seconds"],
        "_wall_seconds": m.get("wall_seconds"),
        "_teacher_params": (m.get("teacher_params") or {}).get("unique"), "_teacher_latency": teacher_latency,
    }


def pareto(rows: list[dict], cost: str, score: str = "select") -> set[int]:
    """Indices of rows no other row dominates: cost <= and score >=, one of them strictly."""
    front = set()
    for i, r in enumerate(rows):
        if r[cost] is None:
            continue
        dominated = any(
            o[cost] is not None and o[cost] <= r[cost] and o[score] >= r[score]
            and (o[cost] < r[cost] or o[score] > r[score])
            for j, o in enumerate(rows) if j != i
        )
        if not dominated:
            front.add(i)
    return front


def _by_speedup(rows: list[dict]) -> bool:
    """Whether speed is the speed-up over the teacher at batch 32 (every row has one: each run times its teacher
    beside it, so the ratio survives the machine's drift between runs, which raw milliseconds measured hours apart
    do not) rather than the batch-32 latency."""
    return bool(rows) and all(r["speedup_b32"] for r in rows)


def _ranked(rows: list[dict]) -> list[dict]:
    """Fastest first (``_by_speedup``), with the Pareto flags."""
    relative = _by_speedup(rows)
    for r in rows:
        r["_speed_cost"] = -r["speedup_b32"] if relative else r["latency_ms_b32"]
    rows.sort(key=lambda r: (r["_speed_cost"] is None, r["_speed_cost"] or 0))
    for cost, key in (("_speed_cost", "pareto_latency"), ("params_unique", "pareto_params")):
        front = pareto(rows, cost)
        for i, r in enumerate(rows):
            r[key] = i in front
    return rows


def collect(roots: list[Path]) -> tuple[list[dict], list[dict]]:
    rows = _ranked([r for p, run in found(roots, "metrics.json") if (r := member(p, run)) is not None])
    skipped = [{"run": run, **json.loads(p.read_text())} for p, run in found(roots, "skipped.json")]
    return rows, skipped


def other_runs(roots: list[Path]) -> list[dict]:
    """Teacher and general-stage runs (no student to place on a front): what they trained and scored."""
    out = []
    for path, run in found(roots, "metrics.json"):
        m = json.loads(path.read_text())
        if m.get("stage") == "task" and "eval" in m:
            continue
        evals = m.get("eval") or {}
        scores = evals.get("teacher") or evals.get("student") or {}
        out.append({"run": run, "stage": m["stage"],
                    "task": m["task"] if m["stage"] != "general" else "-", "model": m.get("student") or "(teacher)",
                    "params": m["params"], "steps": m["steps"], "train_seconds": m["train_seconds"],
                    "examples_per_second": m["train_examples_per_second"],
                    "heldout": ", ".join(f"{k} {100 * v:.2f}" for k, v in scores.items()) or "-",
                    "reported_on": evals.get("reported_on", "-")})
    return out


def evaluations(roots: list[Path]) -> list[dict]:
    """``stage=eval`` results (eval.json): one row per model and split or file."""
    out = []
    for path, _ in found(roots, "eval.json"):
        e = json.loads(path.read_text())
        for name, r in e["results"].items():
            scores = ", ".join(f"{k} {100 * v:.2f}" for k, v in r.items() if k not in ("examples", "examples_per_second"))
            out.append({"model": e["model"], "data": name, "scores": scores, "examples": r["examples"],
                        "examples_per_second": r["examples_per_second"]})
    return out


def _fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(rows: list[dict], skipped: list[dict], others: list[dict] = (), evals: list[dict] = ()) -> str:
    header = ["Run", "Student", "Init", "Params (total / non-emb / unique)", "CPU ms b1", "CPU ms b32",
              "Speed-up b1 / b32", "Held-out", "% of teacher", "Train s", "Pareto (latency / params)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["run"], r["student"], r["init"],
            f"{r['params_total'] / 1e6:.2f}M / {r['params_non_embedding'] / 1e6:.2f}M / {r['params_unique'] / 1e6:.2f}M",
            _fmt(r["latency_ms_b1"]), _fmt(r["latency_ms_b32"]),
            f"{speed(r['speedup_b1'], r.get('speedup_b1_range'))} / {speed(r['speedup_b32'], r.get('speedup_b32_range'))}",
            f"{r['metric']} {100 * r['heldout']:.2f} ({r['reported_on']})", _fmt(r["pct_of_teacher"], 1),
            _fmt(r["train_seconds"], 0),
            " / ".join("yes" if r[k] else "-" for k in ("pareto_latency", "pareto_params")),
        ]) + " |")
    if skipped:
        lines += ["", "Skipped members:", *(f"- {s['run']}: {s['reason']}" for s in skipped)]
    if others:
        lines += ["", "Other runs (teacher fine-tuning, general distillation):", "",
                  "| Run | Stage | Task | Model | Params (total / unique) | Steps | Train s | Ex/s | Held-out |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {o['run']} | {o['stage']} | {o['task']} | {o['model']} | {o['params']['total'] / 1e6:.2f}M / "
                  f"{o['params']['unique'] / 1e6:.2f}M | {o['steps']} | {o['train_seconds']:.0f} | "
                  f"{o['examples_per_second']:.1f} | {o['heldout']} ({o['reported_on']}) |" for o in others]
    if evals:
        lines += ["", "Evaluations (stage=eval):", "", "| Model | Data | Scores | Examples | Ex/s |", "|---|---|---|---|---|"]
        lines += [f"| {e['model']} | {e['data']} | {e['scores']} | {e['examples']} | {e['examples_per_second']:.0f} |"
                  for e in evals]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    teacher = next((r for r in rows if r["_teacher_params"]), None)
    # speed as _ranked measured it: the speed-up over the teacher (the teacher at 1x) or the raw latency
    if _by_speedup(rows):
        speed_panel = ("speedup_b32", "pareto_latency", "speed-up over the teacher at batch 32 (median)", 1.0)
    else:
        speed_panel = ("latency_ms_b32", "pareto_latency", "CPU latency at batch 32 (ms, median)",
                       teacher and teacher["_teacher_latency"].get("b32"))
    panels = [speed_panel, ("params_unique", "pareto_params", "unique parameters (millions)",
                            teacher and teacher["_teacher_params"])]
    metric = rows[0]["metric"] if rows else "metric"
    # points named by shape, or by run where several runs share a shape (the rows of a recipe study)
    shapes = [_short(r["student"]) for r in rows]
    names = shapes if len(set(shapes)) == len(shapes) else [r["run"] for r in rows]
    for ax, (key, flag, label, teacher_x) in zip(axes, panels):
        scale = 1e6 if key == "params_unique" else 1.0
        points = [r for r in rows if r[key] is not None]
        ax.scatter([r[key] / scale for r in points], [100 * r["heldout"] for r in points], color="tab:blue",
                   label="student")
        front = sorted((r for r in points if r[flag]), key=lambda r: r[key])
        ax.plot([r[key] / scale for r in front], [100 * r["heldout"] for r in front], color="tab:orange",
                marker="o", label=f"Pareto front (chosen on {rows[0]['selected_on'] if rows else 'selection'})")
        for r, name in zip(rows, names):
            if r[key] is not None:
                ax.annotate(name, (r[key] / scale, 100 * r["heldout"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        if teacher and teacher_x is not None:
            ax.scatter([teacher_x / scale], [100 * teacher["teacher_heldout"]], marker="*", s=160, color="tab:red",
                       label="teacher")
        ax.set_xlabel(label)
        ax.set_ylabel(f"held-out {metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Students: held-out {metric} against cost")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def front_table(rows: list[dict]) -> str:
    """The short form of a report (a README's results): one line per student, fastest first, with the score that
    chose its checkpoint beside the held-out one and whether it is on the latency front."""
    lines = ["| run | student | unique params | speed-up b1 / b32 | select | held-out | % of teacher | front |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {_short(r['student'])} | {r['params_unique'] / 1e6:.1f}M | "
                     f"{speed(r['speedup_b1'])} / {speed(r['speedup_b32'])} | {100 * r['select']:.2f} "
                     f"({r['selected_on']}) | {100 * r['heldout']:.2f} ({r['reported_on']}) | "
                     f"{_fmt(r['pct_of_teacher'], 1)}% | {'yes' if r['pareto_latency'] else ''} |")
    return "\n".join(lines) + "\n"


# a block in a Markdown file that a report rebuilds: <!-- front: DIR [DIR ...] -> OUT --> ... <!-- /front -->
BLOCK = re.compile(r"(<!-- front: (?P<dirs>[^>]+?) -> (?P<out>\S+) -->\n)(?P<body>.*?)(<!-- /front -->)", re.S)


# settings (prefixes) that say how a run runs (rundir's RESUME_FREE) or where its files are, not how its student was made
WHERE = (*RESUME_FREE, "run_dir", "runs_root", "teacher.finetuned", "augment.cache_dir")


def changes(base: dict, other: dict) -> list[str]:
    """What ``other``'s resolved config sets differently from ``base``'s, as overrides (``key=value``; ``key=-``
    for a setting ``other`` lacks), where the files went (``WHERE``) left out."""
    a, b = flat_settings(base), flat_settings(other)
    keys = [k for k in {**a, **b} if not k.startswith(WHERE) and a.get(k, "-") != b.get(k, "-")]
    return [f"{k}={b.get(k, '-')}" for k in keys]


def ablation_table(base: Path, dirs: list[Path]) -> str:
    """One line per task run kept below ``dirs`` against the run kept in ``base`` (the whole recipe): what its
    resolved config changes (``changes``: read from the configs, not from the row's name, so an accidental
    difference shows too), its score on the selection split and held out, the differences in points, and its
    training and wall time."""
    def config(run_dir: Path) -> dict:
        return OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))

    recipe = config(base)
    ref = member(base / "metrics.json", f"{base.parent.name}/{base.name}")
    rows = [r for d in dirs for path, run in found([d], "metrics.json")  # every run named by its directory
            if path.parent.resolve() != base.resolve() and (r := member(path, f"{d.name}/{run}"))]
    lines = ["| run | changes from the recipe | select | held-out | % of teacher | Δ select | Δ held-out | "
             "train / wall min |", "|---|---|---|---|---|---|---|---|"]
    for r in [ref, *rows]:
        diff = "(the recipe)" if r is ref else ", ".join(f"`{c}`" for c in changes(recipe, config(r["_dir"])))
        deltas = ["" if r is ref else f"{100 * (r[k] - ref[k]):+.2f}" for k in ("select", "heldout")]
        lines.append(f"| {r['run']} | {diff or 'nothing'} | {100 * r['select']:.2f} ({r['selected_on']}) | "
                     f"{100 * r['heldout']:.2f} ({r['reported_on']}) | {_fmt(r['pct_of_teacher'], 1)}% | "
                     f"{' | '.join(deltas)} | {_minutes(r['train_seconds'])} / {_minutes(r['_wall_seconds'])} |")
    return "\n".join(lines) + "\n"


# a block in a Markdown file that a report rebuilds: <!-- ablation: BASE_RUN DIR [DIR ...] --> ... <!-- /ablation -->
ABLATION = re.compile(r"(<!-- ablation: (?P<base>\S+) (?P<dirs>[^>]+?) -->\n)(?P<body>.*?)(<!-- /ablation -->)", re.S)
# every kind of block update_blocks rebuilds
RESULT_BLOCKS = (BLOCK, ABLATION)


def update_blocks(text: str, base: Path, write: bool = True, page_dir: Path | None = None) -> str:
    """``text`` with each front block's body rebuilt from the kept runs below its directories (relative to
    ``base``): ``front_table``, then a link to the plot, relative to ``page_dir`` (the file's directory; default
    ``base``) so it resolves from a page under docs/ too (``write``: also write the full report, table, CSV and
    plot, to the block's OUT directory); and each ablation block's body, ``ablation_table``."""
    def rebuilt(match: re.Match) -> str:
        dirs = [base / d for d in match["dirs"].split()]
        if write:
            write_report(dirs, base / match["out"])
        rows, _ = collect(dirs)
        plot_link = Path(os.path.relpath(base / match["out"] / "report.png", page_dir or base)).as_posix()
        body = front_table(rows) + f"\n![held-out accuracy against cost]({plot_link})\n"
        return match.group(1) + body + match.group(5)

    def ablation(match: re.Match) -> str:
        table = ablation_table(base / match["base"], [base / d for d in match["dirs"].split()])
        return match.group(1) + table + match.group(5)

    return ABLATION.sub(ablation, BLOCK.sub(rebuilt, text))


def remeasure(rows: list[dict], texts: list[str], threads: int, repeats: int) -> None:
    """Teacher and members timed in this one process (the teacher first: the speed-up reference)."""
    from distill.bench import benchmark

    teachers = {json.loads((r["_dir"] / "metrics.json").read_text())["teacher_dir"] for r in rows}
    if len(teachers) != 1:
        raise ConfigError(f"--bench needs one teacher across the runs, found {sorted(teachers)}")
    teacher = teachers.pop()
    dirs = [str(r["_dir"] / "model") for r in rows]
    report = benchmark([teacher, *dirs], texts=texts, threads=threads, repeats=repeats)
    timing = {(x["model_dir"], x["batch_size"]): x for x in report["results"] if x["engine"] == "torch"}
    for r, d in zip(rows, dirs):
        for b in (1, 32):
            t = timing[(d, b)]
            r[f"latency_ms_b{b}"], r[f"speedup_b{b}"] = t["median_ms"], t["speedup"]
            r[f"speedup_b{b}_range"] = [t["speedup_min"], t["speedup_max"]]
        r["_teacher_latency"] = {f"b{b}": timing[(teacher, b)]["median_ms"] for b in (1, 32)}


def write_report(root: str | Path | list, out: str | Path | None = None, bench_texts: list[str] | None = None,
                 threads: int = 2, repeats: int = 10) -> dict[str, Path]:
    roots = [Path(r) for r in root] if isinstance(root, (list, tuple)) else [Path(root)]
    if out is None and len(roots) > 1:
        raise ConfigError("report: several directories need --out DIR, where report.md/.csv/.png go")
    out = Path(out) if out else roots[0]
    rows, skipped = collect(roots)
    if bench_texts is not None and rows:
        remeasure(rows, bench_texts, threads, repeats)
        rows = _ranked(rows)
    others, evals = other_runs(roots), evaluations(roots)
    if not rows and not skipped and not others and not evals:
        raise ConfigError(f"{', '.join(map(str, roots))}: no metrics.json, skipped.json or eval.json below it; "
                          "point it at a runs or sweep directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "png": out / "report.png"}
    paths["md"].write_text(markdown(rows, skipped, others, evals))
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, paths["png"])
    return paths


def comparison_rows(root: Path) -> list[dict]:
    """Every task run under ``root``: its losses, steps, time, its score on the selection split and held out."""
    out = []
    for path in runs_below(root, "metrics.json"):
        m = json.loads(path.read_text())
        if m.get("stage") != "task":
            continue
        e, metric = m["eval"], next(iter(m["eval"]["student"]))
        phases = "; ".join(f"{name}: " + "+".join(k for k, v in p["losses"].items() if k != "loss")
                           for name, p in m["phases"].items())
        out.append({
            "run": str(path.parent.relative_to(root)), "student": m["student"], "phases": phases,
            "init": m.get("student_init"), "steps": m["steps"], "seconds": m["train_seconds"],
            "wall_seconds": m.get("wall_seconds"),
            "split": f"{e['reported_on']} (picked on {e['selected_on']})", "metric": metric,
            "student_score": e["student"][metric], "teacher_score": e["teacher"][metric],
            "student_select": e["student_select"][metric],
            "speedup": m.get("speedup") or {}, "speedup_range": m.get("speedup_range") or {},
        })
    return out


def general_comparison(root: Path) -> list[str]:
    """Table lines for the general-stage runs under ``root``: each loss term's mean over the last third of the logged
    windows. Within the first epoch no batch is seen twice, so each window's loss was measured on text the student
    had not yet trained on (progressive validation): a held-out figure without a held-out split."""
    rows = []
    for path in runs_below(root, "metrics.json"):
        m, log_file = json.loads(path.read_text()), path.parent / "log.jsonl"
        if m.get("stage") != "general" or not log_file.is_file():
            continue
        windows = [r for r in map(json.loads, log_file.read_text().splitlines()) if "loss" in r]
        if windows:
            tail = windows[-max(1, len(windows) // 3):]
            terms = ["loss", *(k for k in m["losses"] if k != "loss")]
            rows.append((str(path.parent.relative_to(root)), m["steps"], f"{tail[0]['step']}-{tail[-1]['step']}",
                         {k: sum(w[k] for w in tail) / len(tail) for k in terms if k in tail[0]}))
    if not rows:
        return []
    terms = list(rows[0][3])
    return ["", "| general run | steps | windows averaged (steps) | " + " | ".join(f"{t} (held-out)" for t in terms) + " |",
            "|---|---|---|" + "---|" * len(terms),
            *(f"| {run} | {steps} | {span} | " + " | ".join(f"{means.get(t, float('nan')):.4f}" for t in terms) + " |"
              for run, steps, span, means in rows)]


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def stage_times(root: Path) -> list[str]:
    """Table lines: where each run under ``root`` (a study's kept rows and the runs they need) spent its wall time,
    in minutes: augmentation, its first training epoch (where a distillation run's teacher runs live and its outputs
    are stored), the later epochs, evaluation (during training and held out), the benchmark, and the rest (loading,
    initialisation, checkpoints, writing); then all runs together, the cost of everything the table needed."""
    rows, total = [], 0.0
    for path, run in found([root], "metrics.json"):
        m = json.loads(path.read_text())
        if not m.get("wall_seconds") or "phases" not in m:
            continue
        epochs = [e["seconds"] for p in m["phases"].values() for e in p.get("epochs", [])]
        after = m.get("seconds_after_training") or {}
        parts = {"augmentation": (m.get("augment") or {}).get("seconds", 0.0),
                 "first epoch": epochs[0] if epochs else m["train_seconds"], "later epochs": sum(epochs[1:]),
                 "evaluation": sum(p.get("eval_seconds", 0.0) for p in m["phases"].values())
                 + after.get("held_out_eval", 0.0),
                 "benchmark": after.get("bench")}
        sources = [p for p in (m.get("teacher_outputs") or {}).values() if isinstance(p, dict)]
        live = sum(p.get("live_batches", 0) for p in sources) if sources else "-"  # '-': no stored teacher outputs
        known = sum(v for v in parts.values() if v)
        rest, wall = _minutes(m["wall_seconds"] - known), _minutes(m["wall_seconds"])
        if (resumed := m.get("resumed_at_step")) is not None and m.get("wall_seconds_before_resume"):
            wall += f" (resumed at step {resumed})"
        elif resumed is not None:
            # an older version's resumed run counted its wall time from the resume, its training times from the
            # start: no rest to tell
            rest, wall = "-", f"{wall} (from step {resumed})"
        rows.append(f"| {run} | {m['stage']} | {live} | "
                    + " | ".join(_minutes(v) for v in parts.values()) + f" | {rest} | {wall} |")
        total += m["wall_seconds"]
    if not rows:
        return []
    return ["", "Wall time per run, in minutes (live teacher batches: those that ran the teacher, in the first epoch; "
            "0: every teacher output read from a store; '-': none stored. Elsewhere '-': not recorded by the run's "
            "version, so counted in the rest; 'resumed at step N': its processes' times up to that checkpoint and "
            "the resumed one's, the work redone after it counted once; 'from step N': resumed there by an older "
            "version, its wall time counting from the resume, its training times from its start):", "",
            "| run | stage | live teacher batches | augmentation | first epoch | later epochs | evaluation | benchmark | "
            "rest | wall |", "|---|---|---|---|---|---|---|---|---|---|", *rows,
            f"| all runs | | | | | | | | | {_minutes(total)} |"]


def comparison(root: str | Path) -> str:
    """``results.md``: every task run under ``root`` (recipe studies, ablations), with the score on the selection
    split (compare recipes on it, not on the held-out one), its whole wall time, and means over runs differing only
    by ``_seed<N>``; then where every run's time went (``stage_times``) and the general-stage runs' held-out losses
    (``general_comparison``)."""
    found = comparison_rows(Path(root))
    # 'student (select)' is the score on the selection split: compare recipes on it, not on the held-out one
    lines = ["| run | student | losses | steps | train time | wall time | held-out split | student (select) | student | "
             "teacher | % of teacher | speed-up b1 / b32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        speeds = " / ".join(speed(r["speedup"][k], r["speedup_range"].get(k))
                            for k in ("torch_batch1", "torch_batch32") if k in r["speedup"]) or "-"
        wall = f"{r['wall_seconds'] / 60:.1f} min" if r["wall_seconds"] else "-"
        lines.append(f"| {r['run']} | {r['student']} | {r['phases']} | {r['steps']} | {r['seconds']:.0f} s | {wall} | {r['split']} | "
                     f"{100 * r['student_select']:.2f} | "
                     f"{100 * r['student_score']:.2f} | {100 * r['teacher_score']:.2f} | "
                     f"{100 * r['student_score'] / r['teacher_score']:.1f}% | {speeds} |")
    groups = defaultdict(list)
    for r in found:
        groups[re.sub(r"_seed\d+$", "", r["run"])].append(r)
    seeded = {k: v for k, v in groups.items() if len(v) > 1}
    if seeded:
        lines += ["", "| runs (mean over seeds) | n | student (select) | student | teacher | % of teacher |",
                  "|---|---|---|---|---|---|"]
        for name, group in seeded.items():
            sel, s, t = (sum(r[k] for r in group) / len(group) for k in ("student_select", "student_score", "teacher_score"))
            each = ", ".join(f"{100 * r['student_score']:.2f}" for r in group)
            lines.append(f"| {name} | {len(group)} | {100 * sel:.2f} | {100 * s:.2f} ({each}) | {100 * t:.2f} | "
                         f"{100 * s / t:.1f}% |")
    lines += stage_times(Path(root))
    lines += general_comparison(Path(root))
    text = "\n".join(lines) + "\n"
    write_text(Path(root) / "results.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill report", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="+", help="a sweep (or runs) directory; several make one report (needs --out)")
    parser.add_argument("--out", help="where report.md/.csv/.png go (default: the directory)")
    parser.add_argument("--bench", metavar="TSV", help="time the teacher and every member again in this process on "
                        "this file's sentences (sentence<TAB>label), so their latencies compare directly")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compare", action="store_true", help="instead, write results.md: every task run with its "
                        "selection-split score and means over _seed<N> runs (recipe studies, ablations)")
    parser.add_argument("--keep", metavar="DIR", help="first copy each run's metrics.json, config.yaml, overrides, "
                        "log and benchmark into DIR (same relative paths), then report from DIR alone")
    args = parser.parse_args(argv)
    if (args.keep or args.compare) and len(args.root) > 1:
        raise ConfigError("report: --keep and --compare take one directory; several are for one front (with --out)")
    if args.keep:
        kept = keep_runs(Path(args.root[0]), Path(args.keep))
        print(f"kept {len(kept)} runs in {args.keep}")
        args.root = [args.keep]
    if args.compare:
        print(comparison(args.root[0]), end="")
        return 0
    texts = None
    if args.bench:
        from distill.data import read_texts

        texts = read_texts(args.bench)
    paths = write_report(args.root, args.out, texts, args.threads, args.repeats)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
