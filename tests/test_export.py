"""Export and benchmark on tiny random models: save/reload, pipeline, ONNX parity, int8, benchmark JSON."""

import contextlib
import io
import json
import shutil
import statistics
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from distill.cli import main as distill_cli
from distill.config import StudentShape
from distill.errors import ExportError
from distill.model_card import write_model_card
from distill.student import build_student, parameter_counts

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
        assert distill_cli(["export", "onnx", str(student_dir), "--out", str(out), "--quantize", "--dev-tsv", str(dev)]) == 0
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
    from distill.export import parity
    from distill.hf import load_classifier

    model, tokenizer = load_classifier(student_dir)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # the graph on disk no longer matches the model
    with pytest.raises(ExportError, match=r"differ from PyTorch by .* > --atol"):
        parity(model, tokenizer, exported / "model.onnx", atol=1e-4)


def test_bad_model_dir_is_one_line(tmp_path, capsys):
    assert distill_cli(["export", "onnx", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nowhere is not a directory" in err and "\n" not in err
    assert distill_cli(["export", "onnx", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_model_card_writes_what_it_is_given(student_dir, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(student_dir, d)
    card = write_model_card(d, {"teacher": "runs/teacher/sst2/model", "params": {"total": 1234567},
                                "heldout": {"accuracy": 0.9}, "speedup": 4.2}).read_text()
    assert "Teacher: runs/teacher/sst2/model" in card and "total 1,234,567" in card and "4.2" in card
    assert "Data" not in card and "Cross-layer" not in card


def test_benchmark_json_has_the_fields(student_dir, tiny_dir, exported, tmp_path, capsys):
    # the student dir gets the graphs exported above; the tiny teacher is exported on the fly
    student = tmp_path / "student" / "model"
    shutil.copytree(student_dir, student)
    for name in ("model.onnx", "model.int8.onnx"):
        shutil.copy(exported / name, student / name)
    out = tmp_path / "bench.json"
    assert distill_cli(["bench", str(student), str(tiny_dir), "--length", "12", "--repeats", "2", "--threads", "1",
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
    assert ref["speedup"] == 1.0 and report["rounds"] == 3
    # the median over rounds of each round's ratio (not the ratio of the pooled medians), with its spread
    ratios = sorted(a / b for a, b in zip(ref["round_median_ms"], other["round_median_ms"]))
    assert len(ratios) == 3 and other["speedup"] == pytest.approx(ratios[1])
    assert (other["speedup_min"], other["speedup_max"]) == pytest.approx((ratios[0], ratios[2]))
    assert other["median_ms"] == pytest.approx(sorted(other["round_median_ms"])[1])
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


def test_bench_precision_runs_both_precisions_on_the_same_batches(student_dir, tmp_path, capsys):
    """bf16 really is on in its rows (its logits move off fp32's, by bf16's rounding and no more), and a file too
    small for the calls asked is one line before any model loads. (The precisions take turns on every batch through
    bench.interleaved_timings: test_models_take_turns_call_by_call_so_drift_falls_on_all_alike.)"""
    data = tmp_path / "sentences.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"the film number {i} was {'very ' * (i % 5)}good\t1\n" for i in range(24)))
    out = tmp_path / "precision.json"
    assert distill_cli(["bench", "precision", str(student_dir), "--data", str(data), "--batch-size", "4", "--calls", "2",
                        "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["measure"] for r in report["rows"]] == ["forward (teacher pass)", "training step"]
    assert all(r["fp32_ms"] > 0 and r["bf16_ms"] > 0 and r["speedup"] == r["fp32_ms"] / r["bf16_ms"]
               for r in report["rows"])
    assert 0 < report["max_logit_difference"] < 0.05  # on, and rounding only (bf16 keeps about 3 digits)
    assert "| training step |" in capsys.readouterr().out
    assert distill_cli(["bench", "precision", str(student_dir), "--data", str(data), "--batch-size", "4",
                        "--calls", "4"]) == 2  # 3 untimed calls (bench.WARMUP) and 4 timed, of 4 sentences each
    assert "24 sentences, 28 needed for --calls 4 at --batch-size 4" in capsys.readouterr().err


def test_missing_onnx_packages_are_one_line(student_dir, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert distill_cli(["export", "onnx", str(student_dir)]) == 2
    assert "onnxscript not installed; pip install -e '.[dev]'" in capsys.readouterr().err


def _flops_formula(layers, hidden, intermediate, tokens, classes, embedding=None):
    """The documented count (distill/bench.py): per layer 2(4H^2 + 2HI)T + 2*2*T^2*H, then pooler and classifier
    on one token; ALBERT adds its E -> H projection, 2*T*E*H."""
    per_layer = 2 * (4 * hidden**2 + 2 * hidden * intermediate) * tokens + 2 * 2 * tokens**2 * hidden
    head = 2 * hidden**2 + 2 * hidden * classes
    mapping = 2 * tokens * embedding * hidden if embedding else 0
    return layers * per_layer + head + mapping


def test_flops_follow_the_documented_formula(student, tiny_dir):
    import numpy as np

    from distill.bench import flops_per_example

    tokens = 12
    batch = [{"input_ids": np.full((1, tokens), 7, dtype=np.int64), "attention_mask": np.ones((1, tokens), dtype=np.int64),
              "token_type_ids": np.zeros((1, tokens), dtype=np.int64)}]
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_dir).eval()
    c = teacher.config
    assert flops_per_example(teacher, batch)[0] == _flops_formula(c.num_hidden_layers, c.hidden_size, c.intermediate_size,
                                                                  tokens, c.num_labels)
    model = student[0]
    assert flops_per_example(model, batch)[0] == _flops_formula(SHAPE.num_layers, SHAPE.hidden_size, SHAPE.intermediate_size,
                                                                tokens, 2, embedding=SHAPE.embedding_size)


def test_models_take_turns_call_by_call_so_drift_falls_on_all_alike():
    """A machine that slows down halfway must not make the model timed first look faster: the runners alternate
    on each batch index, the first WARMUP calls of each are untimed, and every model is timed on every batch."""
    from distill.bench import WARMUP, interleaved_timings

    calls, clock = [], {"slow": 0.0}

    def runner(name):
        def run(batch):
            calls.append((name, batch))
            time.sleep(0.001 + clock["slow"])
            if len(calls) == 2 * (WARMUP + 4):  # the machine slows down for the second half of the timed calls
                clock["slow"] = 0.004
        return run

    n = WARMUP + 8
    times = interleaved_timings([runner("a"), runner("b")], [list(range(n)), list(range(n))])
    assert calls == [(name, i) for i in range(n) for name in ("a", "b")]
    assert [len(t) for t in times] == [8, 8]
    # same work, same drift: the ratio of medians stays near 1 (timed one after the other it would be about 3-5x)
    assert 0.5 < statistics.median(times[0]) / statistics.median(times[1]) < 2.0


def test_a_larger_model_measures_slower(student_dir, tokenizer, tmp_path):
    """A sanity check on the timing path: 3 x 256-wide layers against 2 x 16, same inputs, same process."""
    from distill.bench import benchmark

    big = tmp_path / "big"
    build_student(StudentShape(num_layers=3, hidden_size=256, embedding_size=64, num_heads=4, intermediate_size=1024,
                               sharing="none", max_position_embeddings=64), tokenizer, num_labels=2).save_pretrained(big)
    tokenizer.save_pretrained(big)
    report = benchmark([str(student_dir), str(big)], length=48, threads=1, repeats=3)
    rows = {(r["model_dir"], r["batch_size"]): r for r in report["results"]}
    for batch in (1, 32):
        assert rows[(str(big), batch)]["median_ms"] > rows[(str(student_dir), batch)]["median_ms"]
        assert rows[(str(big), batch)]["speedup"] < 1.0


def test_onnx_and_int8_predict_what_pytorch_predicts_on_real_sentences(tokenizer, tmp_path):
    """Agreement of argmax predictions with the PyTorch model on 200 SST-2 dev sentences, for a student whose
    predictions split those sentences (wider random weights, classifier bias at the median margin)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    from distill.data import read_texts
    from distill.export import export_dir

    dev = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"
    assert dev.is_file(), f"{dev} is missing: the tests read SST-2 from ../shared beside the repository"
    texts = read_texts(dev)[:200]
    torch.manual_seed(2)
    model = build_student(SHAPE, tokenizer, num_labels=2, initializer_range=0.3).eval()
    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits
        model.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
        expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.argmax(-1).numpy()
    assert 0.3 < expected.mean() < 0.7, "a model predicting one class would agree trivially"
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        export_dir(tmp_path, atol=1e-3, quantize_int8=True)
    agreement = {}
    for name in ("model.onnx", "model.int8.onnx"):
        sess = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
        agreement[name] = float((sess.run(["logits"], inputs)[0].argmax(-1) == expected).mean())
    assert agreement["model.onnx"] == 1.0, agreement
    assert agreement["model.int8.onnx"] >= 0.9, agreement
