"""Export and benchmark on tiny random models: save/reload, pipeline, ONNX parity, int8, benchmark JSON."""

import contextlib
import io
import json
import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from distill.export import ExportError, main as export_main, write_model_card
from distill.student import StudentShape, build_student, parameter_counts

LABELS = {0: "negative", 1: "positive"}
SHAPE = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=20,
                     sharing="all", max_position_embeddings=64)


@pytest.fixture(scope="module")
def student(tmp_path_factory, tokenizer):
    """A tiny ALBERT student in memory and saved the way a task run saves it: weights, tokenizer, id2label."""
    d = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    model = build_student(SHAPE, tokenizer, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return model.eval(), d


@pytest.fixture(scope="module")
def student_dir(student):
    return student[1]


@pytest.fixture(scope="module")
def exported(student_dir, tmp_path_factory):
    """The student exported (dynamo), parity-checked and quantized once, through the CLI."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path_factory.mktemp("onnx")
    dev = out / "dev.tsv"
    dev.write_text("sentence\tlabel\na good movie\t1\nbad and boring\t0\nthe plot was dull\t0\nfun\t1\n")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert export_main(["onnx", str(student_dir), "--out", str(out), "--quantize", "--dev-tsv", str(dev)]) == 0
    (out / "printed.txt").write_text(printed.getvalue())
    return out


def test_saved_student_reloads_with_plain_transformers(student, tokenizer, padded_batch):
    ours, student_dir = student
    reloaded = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()
    inputs = {k: v for k, v in padded_batch.items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, ours(**inputs).logits, atol=0, rtol=0)
    assert parameter_counts(reloaded) == parameter_counts(ours)
    assert AutoTokenizer.from_pretrained(student_dir).get_vocab() == tokenizer.get_vocab()


def test_pipeline_returns_label_names(student_dir):
    classify = pipeline("text-classification", model=str(student_dir))
    out = classify(["a good movie", "bad and boring"])
    assert [set(o) for o in out] == [{"label", "score"}] * 2
    assert {o["label"] for o in out} <= set(LABELS.values())


def test_onnx_export_matches_pytorch(exported):
    import onnx

    printed = (exported / "printed.txt").read_text()
    diff = float(printed.split("parity max |diff| = ")[1].split()[0])
    assert diff <= 1e-4, printed

    graph = onnx.load(str(exported / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    # batch and sequence are symbolic, not the sizes of the export sample
    assert all(not d.dim_value for i in graph.graph.input for d in i.type.tensor_type.shape.dim)


def test_quantized_export_runs(exported, student_dir):
    import onnxruntime as ort

    assert (exported / "model.int8.onnx").is_file()
    assert (exported / "model.int8.onnx").stat().st_size < (exported / "model.onnx").stat().st_size
    sess = ort.InferenceSession(str(exported / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    enc = AutoTokenizer.from_pretrained(student_dir)(["a fun story", "bad"], padding=True, return_tensors="np")
    logits = sess.run(["logits"], {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
    assert logits.shape == (2, 2)


def test_export_prints_both_accuracies(exported):
    printed = (exported / "printed.txt").read_text()
    assert "model.onnx dev accuracy: " in printed and "model.int8.onnx dev accuracy: " in printed
    assert "(4 examples)" in printed


def test_torchscript_exporter_also_passes_parity(student_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from distill.export import export_dir

    result = export_dir(student_dir, tmp_path, exporter="torchscript")
    assert result["max_abs_diff"] <= 1e-4 and (tmp_path / "model.onnx").is_file()


def test_parity_failure_is_one_line(student_dir, exported, tmp_path, capsys):
    from distill.export import load_classifier, parity

    model, tokenizer = load_classifier(student_dir)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # the graph on disk no longer matches the model
    with pytest.raises(ExportError, match=r"differ from PyTorch by .* > --atol"):
        parity(model, tokenizer, exported / "model.onnx", atol=1e-4)


def test_bad_model_dir_is_one_line(tmp_path, capsys):
    assert export_main(["onnx", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nowhere is not a directory" in err and "\n" not in err
    assert export_main(["onnx", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_model_card_writes_what_it_is_given(student_dir, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(student_dir, d)
    card = write_model_card(d, {"teacher": "runs/teacher/sst2/model", "params": {"total": 1234567},
                                "heldout": {"accuracy": 0.9}, "speedup": 4.2}).read_text()
    assert "Teacher: runs/teacher/sst2/model" in card and "total 1,234,567" in card and "4.2" in card
    assert "Data" not in card and "Cross-layer" not in card


def test_benchmark_json_has_the_fields(student_dir, tiny_dir, exported, tmp_path, capsys):
    from distill.bench import main as bench_main

    # the student dir gets the graphs exported above; the tiny teacher is exported on the fly
    student = tmp_path / "student" / "model"
    shutil.copytree(student_dir, student)
    for name in ("model.onnx", "model.int8.onnx"):
        shutil.copy(exported / name, student / name)
    out = tmp_path / "bench.json"
    assert bench_main([str(student), str(tiny_dir), "--length", "12", "--repeats", "2", "--threads", "1",
                       "--onnx", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "speed-up" in capsys.readouterr().out
    assert report["threads"] == report["torch_threads"] == 1 and report["repeats"] == 2
    assert report["reference"] == str(student)
    assert [m["model_type"] for m in report["models"]] == ["albert", "bert"]
    for m in report["models"]:
        assert set(m["params"]) == {"total", "embedding", "non_embedding", "unique"}
        assert m["flops_per_example"] > 0 and m["tokens_per_example"] == 12
    assert report["models"][0]["onnx_source"] == "model dir"
    assert report["models"][1]["onnx_source"] == "exported for this run"
    rows = {(r["model_dir"], r["engine"], r["batch_size"]): r for r in report["results"]}
    assert set(rows) >= {(d, e, b) for d in (str(student), str(tiny_dir)) for e in ("torch", "onnx") for b in (1, 32)}
    for r in report["results"]:
        assert r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] and r["sentences_per_s"] > 0
        assert r["padded_length"] == 12
    ref = rows[(str(student), "torch", 1)]
    other = rows[(str(tiny_dir), "torch", 1)]
    assert ref["speedup"] == 1.0
    assert other["speedup"] == pytest.approx(ref["median_ms"] / other["median_ms"])
    assert rows[(str(student), "onnx-int8", 1)]["speedup"] == 1.0


def test_benchmark_on_sentences_uses_real_lengths(student_dir):
    from distill.bench import benchmark

    texts = ["a good movie", "bad", "the plot was dull and the acting was awful", "fun"] * 3
    report = benchmark([str(student_dir)], texts, None, threads=1, repeats=2, onnx=False)
    by_batch = {r["batch_size"]: r for r in report["results"]}
    assert by_batch[1]["padded_length"] < by_batch[32]["padded_length"]  # batch 1 is never padded
    assert report["inputs"] == "dev sentences"
    with pytest.raises(ExportError, match="not both or neither"):
        benchmark([str(student_dir)], texts, 8, threads=1, repeats=2, onnx=False)


def test_missing_onnx_packages_are_one_line(student_dir, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert export_main(["onnx", str(student_dir)]) == 2
    assert "onnxscript not installed; pip install -e '.[dev]'" in capsys.readouterr().err
