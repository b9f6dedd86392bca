"""stage=eval: a saved model scored on task splits and extra files, against an independent count."""

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distill.stages import run
from distill.errors import ConfigError
from distill.testing import write_tiny_teacher, write_tiny_workspace

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import compose_cfg

SENTENCES = ["the movie was very good", "bad", "a fun story and great acting", "the plot was dull",
             "it is good", "boring and bad", "great fun", "dull"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = write_tiny_workspace(tmp_path_factory.mktemp("eval"), 16, 12, {})
    torch.manual_seed(4)
    model_dir = root / "model"
    write_tiny_teacher(model_dir, head="sequence_classification")
    # two extra labelled files in the task's formats: TSV with a header, and JSON lines
    (root / "a.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)))
    (root / "b.jsonl").write_text("".join(json.dumps({"sentence": s, "label": (i // 2) % 2}) + "\n"
                                          for i, s in enumerate(SENTENCES[:6])))
    return root


def expected_accuracy(model_dir: Path, texts: list[str], labels: list[int]) -> float:
    """Plain transformers, one sentence at a time, and a count."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    right = 0
    for text, label in zip(texts, labels):
        with torch.no_grad():
            right += int(model(**tokenizer(text, return_tensors="pt")).logits.argmax(-1).item() == label)
    return right / len(texts)


def test_eval_scores_splits_and_files_like_an_independent_count(ws, tmp_path):
    report = run(compose_cfg(ws, "stage=eval", f"model={ws / 'model'}", "eval.splits=[dev,train]",
                             f"eval.files=[{ws / 'a.tsv'},{ws / 'b.jsonl'}]", f"run_dir={tmp_path / 'eval'}"))
    assert json.loads((tmp_path / "eval" / "eval.json").read_text()) == json.loads(json.dumps(report))
    results = report["results"]
    assert set(results) == {"dev", "train", f"file:{ws / 'a.tsv'}", f"file:{ws / 'b.jsonl'}"}
    a = results[f"file:{ws / 'a.tsv'}"]
    b = results[f"file:{ws / 'b.jsonl'}"]
    assert (a["examples"], b["examples"]) == (8, 6) and a["examples_per_second"] > 0
    assert a["accuracy"] == pytest.approx(expected_accuracy(ws / "model", SENTENCES, [i % 2 for i in range(8)]))
    assert b["accuracy"] == pytest.approx(expected_accuracy(ws / "model", SENTENCES[:6], [(i // 2) % 2 for i in range(6)]))
    dev = [line.split("\t") for line in (ws / "data" / "dev.tsv").read_text().splitlines()[1:]]
    assert results["dev"]["examples"] == len(dev) == 12
    assert results["dev"]["accuracy"] == pytest.approx(
        expected_accuracy(ws / "model", [t for t, _ in dev], [int(y) for _, y in dev]))


def test_eval_defaults_to_the_reported_split_and_refuses_to_overwrite(ws, tmp_path):
    cfg = lambda *extra: compose_cfg(ws, "stage=eval", f"model={ws / 'model'}", f"run_dir={tmp_path / 'e'}", *extra)  # noqa: E731
    assert set(run(cfg())["results"]) == {"dev"}  # GLUE-style task: dev is the reported split
    with pytest.raises(ConfigError, match="eval.json exists; pass overwrite=true"):
        run(cfg())
    assert set(run(cfg("overwrite=true", "eval.splits=[train]"))["results"]) == {"train"}


@pytest.mark.parametrize("extra, message", [
    ([], "stage=eval needs model=<a saved model directory>"),
    (["model=/nonexistent/model"], "model=/nonexistent/model is not a saved model directory"),
    (["eval.splits=[test]"], "task 'sst2' has no labelled test split"),
    (["eval.splits=[valid]"], "eval.splits='valid' is unknown"),
    (["eval.files=[/nonexistent.tsv]"], "eval.files: /nonexistent.tsv does not exist"),
])
def test_eval_bad_input_is_one_line_before_loading(ws, tmp_path, extra, message):
    model = [] if extra[:1] and extra[0].startswith("model=") else [f"model={ws / 'model'}"] if extra else []
    with pytest.raises(ConfigError, match=message):
        run(compose_cfg(ws, "stage=eval", *model, *extra, f"run_dir={tmp_path / 'e'}"))
