"""Export a saved sequence classifier to ONNX, check it, optionally quantize it.

``python -m distill export onnx <model_dir> [--out DIR] [--atol 1e-4] [--quantize] [--dev-tsv PATH]``

The model directory is any saved Hugging Face sequence classifier with its
tokenizer (a run's ``model/``: the ALBERT student or the BERT teacher). The
graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` with
dynamic batch and sequence axes and returns ``logits``.

Exporter: torch's default since 2.9, the ``torch.export``-based one
(``dynamo=True``, needs ``onnxscript``). It captures the model with symbolic
batch and sequence sizes, so shape-dependent Python in ``transformers`` (mask
building) stays symbolic or is refused at export time. The legacy TorchScript
tracer (``--exporter torchscript``, about 5x faster to export) records one
run and keeps Python decisions on tensor values as constants, warning about
exactly that in the mask code (harmless for BERT and ALBERT today); torch
marks it for removal. Both are checked the same way: an export is only kept
if PyTorch and ONNX Runtime agree on a padded batch of real sentences of
different lengths and on a batch of one (``--atol``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.data import read_labelled
from distill.errors import ExportError
from distill.hf import load_classifier

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
EXPORTERS = ("dynamo", "torchscript")
# real sentences of different lengths, so the parity batch has padding and a long row
PARITY_TEXTS = [
    "a gripping, funny and ultimately moving film that earns every one of its quiet moments.",
    "dull.",
    "the plot was thin, but the acting kept me watching until the very end",
    "not good at all",
]


def require_onnx(exporter: str = "dynamo") -> None:
    """One-line error instead of an ImportError deep inside torch.onnx when the optional packages are missing."""
    needed = ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"{', '.join(missing)} not installed; pip install -e '.[dev]' (or pip install {' '.join(missing)})")


def max_length(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> int:
    """Longest input the model accepts: the tokenizer's limit, capped by the position table."""
    return int(min(tokenizer.model_max_length, model.config.max_position_embeddings))


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], limit: int) -> dict[str, np.ndarray]:
    """The graph's three int64 inputs for ``texts``, padded to the longest (token types zero if the tokenizer has none)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="np")
    if "token_type_ids" not in enc:
        enc["token_type_ids"] = np.zeros_like(enc["input_ids"])
    return {name: enc[name].astype(np.int64) for name in INPUT_NAMES}


class LogitsOnly(nn.Module):
    """Positional (input_ids, attention_mask, token_type_ids) -> logits: one named output, no ModelOutput."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def export_onnx(model: nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path, exporter: str = "dynamo") -> Path:
    """Write ``model`` as a single-file ONNX graph with dynamic batch and sequence axes."""
    if exporter not in EXPORTERS:
        raise ExportError(f"--exporter {exporter} is unknown; use one of {', '.join(EXPORTERS)}")
    # batch 2 with padding: neither axis is 0/1-specialized and the mask path is traced
    sample = encode(tokenizer, PARITY_TEXTS[:2], max_length(model, tokenizer))
    args = tuple(torch.from_numpy(sample[name]) for name in INPUT_NAMES)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {"logits": {0: "batch"}}
    kwargs = {"external_data": False, "verbose": False} if exporter == "dynamo" else {"opset_version": 17}
    out.parent.mkdir(parents=True, exist_ok=True)
    # the wrapper, not only the model, must be in eval mode: the legacy exporter restores the
    # wrapper's mode afterwards, and a training-mode wrapper would switch dropout back on
    wrapper = LogitsOnly(model).eval()
    # tracer, deprecation and progress chatter; the parity check is the real test
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(out), input_names=list(INPUT_NAMES), output_names=["logits"],
            dynamic_axes=axes, dynamo=exporter == "dynamo", **kwargs,
        )
    return out


def session(onnx_path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session; ``threads`` sets intra-op threads (one inter-op thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def onnx_logits(sess, inputs: dict[str, np.ndarray]) -> np.ndarray:
    wanted = {i.name for i in sess.get_inputs()}
    return sess.run(["logits"], {k: v for k, v in inputs.items() if k in wanted})[0]


@torch.no_grad()
def torch_logits(model: nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()


def parity(model: nn.Module, tokenizer: PreTrainedTokenizerBase, onnx_path: Path, atol: float = 1e-4) -> float:
    """Max |logits_torch - logits_onnx| over a padded batch of 4 and a batch of 1; raises above ``atol``."""
    sess, limit = session(onnx_path), max_length(model, tokenizer)
    diff = 0.0
    for texts in (PARITY_TEXTS, PARITY_TEXTS[2:3]):
        inputs = encode(tokenizer, texts, limit)
        diff = max(diff, float(np.abs(torch_logits(model, inputs) - onnx_logits(sess, inputs)).max()))
    if not diff <= atol:  # also catches NaN
        raise ExportError(f"{onnx_path}: ONNX logits differ from PyTorch by {diff:.3g} > --atol {atol:g}; the export is wrong")
    return diff


def quantize(onnx_path: Path) -> Path:
    """Dynamic int8 quantization (weights int8, activations quantized on the fly) into model.int8.onnx beside it.

    The dynamo exporter records intermediate shapes (``value_info``) that the
    quantizer's own shape inference re-derives and then refuses to reconcile
    for the weights; they are only annotations, so they are dropped first.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(onnx_path))
    del graph.graph.value_info[:]
    out = onnx_path.with_name(onnx_path.stem + ".int8.onnx")
    quantize_dynamic(graph, str(out), weight_type=QuantType.QInt8)
    return out


def onnx_accuracy(onnx_path: Path, tokenizer: PreTrainedTokenizerBase, texts: list[str], labels: list[int],
                  limit: int, batch_size: int = 32) -> float:
    """Accuracy of an ONNX classifier on labeled sentences: measured, batch by batch."""
    sess = session(onnx_path)
    preds = [onnx_logits(sess, encode(tokenizer, texts[i : i + batch_size], limit)).argmax(-1)
             for i in range(0, len(texts), batch_size)]
    return float((np.concatenate(preds) == np.asarray(labels)).mean())


def export_dir(model_dir: str | Path, out: str | Path | None = None, atol: float = 1e-4, quantize_int8: bool = False,
               dev_tsv: str | Path | None = None, exporter: str = "dynamo") -> dict:
    """Export, check parity, optionally quantize and score on a dev TSV; prints and returns what it measured."""
    require_onnx(exporter)
    model, tokenizer = load_classifier(model_dir)
    out_dir = Path(out) if out else Path(model_dir)
    path = export_onnx(model, tokenizer, out_dir / "model.onnx", exporter)
    result = {"onnx": str(path), "exporter": exporter, "max_abs_diff": parity(model, tokenizer, path, atol)}
    print(f"wrote {path} ({exporter} exporter); parity max |diff| = {result['max_abs_diff']:.3g} (atol {atol:g})")
    if quantize_int8:
        result["onnx_int8"] = str(quantize(path))
        print(f"wrote {result['onnx_int8']} (dynamic int8)")
    if dev_tsv:
        # string labels by the model's own label names (a distill student saves its task's)
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        texts, labels = read_labelled(dev_tsv, names)
        limit = max_length(model, tokenizer)
        for key in ("onnx", "onnx_int8"):
            if key in result:
                result[f"{key}_accuracy"] = onnx_accuracy(Path(result[key]), tokenizer, texts, labels, limit)
                print(f"{Path(result[key]).name} dev accuracy: {100 * result[f'{key}_accuracy']:.2f} ({len(labels)} examples)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill export", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="format", required=True)
    onnx_cmd = sub.add_parser("onnx", help="export to ONNX and check parity with PyTorch")
    onnx_cmd.add_argument("model_dir", help="a saved sequence-classification model directory (config.json + tokenizer)")
    onnx_cmd.add_argument("--out", help="output directory (default: the model directory)")
    onnx_cmd.add_argument("--atol", type=float, default=1e-4, help="max allowed |logits diff| PyTorch vs ONNX Runtime")
    onnx_cmd.add_argument("--quantize", action="store_true", help="also write model.int8.onnx (dynamic int8)")
    onnx_cmd.add_argument("--dev-tsv", help="a labelled file (sentence and label columns; labels as ids or the model's label names): print fp32 and int8 ONNX accuracy")
    onnx_cmd.add_argument("--exporter", choices=EXPORTERS, default="dynamo", help="torch.onnx exporter (default dynamo)")
    args = parser.parse_args(argv)
    export_dir(args.model_dir, args.out, args.atol, args.quantize, args.dev_tsv, args.exporter)
    return 0
