"""The model card (README.md) a saved student carries: where it came from and what it is worth."""

from __future__ import annotations

from pathlib import Path

from distill.hf import LICENCES, check_model_dir
from distill.files import write_text

CARD_FIELDS = [
    ("teacher", "Teacher"),
    ("licence", "Teacher's licence"),
    ("data", "Data"),
    ("student", "Student shape"),
    ("sharing", "Cross-layer sharing"),
    ("params", "Parameters"),
    ("heldout", "Held-out metrics (on data that chose nothing)"),
    ("speedup", "Measured speed-up"),
]


def _card_value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_model_card(model_dir: str | Path, info: dict) -> Path:
    """Write README.md into ``model_dir`` from whichever of CARD_FIELDS ``info`` holds (missing ones are left out).

    A saved model should say where it came from and what it is worth without
    its run directory; the hub and ``huggingface_hub.ModelCard`` read this file.
    """
    path = check_model_dir(model_dir) / "README.md"
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification", "---", "",
             f"# {info.get('name', Path(model_dir).resolve().parent.name)}", ""]
    lines += [f"- {label}: {_card_value(info[key])}" for key, label in CARD_FIELDS if info.get(key) is not None]
    if info.get("notes"):
        lines += ["", str(info["notes"])]
    return write_text(path, "\n".join(lines) + "\n")


def write_task_card(model_dir: str | Path, cfg, metrics: dict, report_examples: int) -> Path:
    """The card of a task stage's kept student, from its config and ``metrics.json`` body."""
    evals = metrics["eval"]
    return write_model_card(model_dir, {
        "name": f"distill {cfg.student.tag()} on {cfg.task.name}", "teacher": cfg.teacher.finetuned,
        "licence": LICENCES.get(cfg.teacher.name_or_path, f"that of {cfg.teacher.name_or_path} (see its model card)"),
        "data": f"{cfg.task.name} ({evals['reported_on']}: {report_examples} examples, chose nothing)",
        "student": cfg.student.tag(), "sharing": cfg.student.sharing, "params": metrics["params"],
        "heldout": evals["student"], "speedup": metrics.get("speedup"),
    })
