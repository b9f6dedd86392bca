"""TF ALBERT checkpoints (Google and albert_zh layouts) -> Hugging Face, without TensorFlow.

The converted models are checked against the TF variables directly (every parameter, transposes included)
and against an independent numpy forward pass written from the two TF modeling.py files; the committed
checkpoints in tests/data/albert_tf were saved by real TensorFlow (scripts/make_tf_fixture.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AlbertForMaskedLM, AlbertModel, AutoModel, AutoTokenizer

from distill import tf_checkpoint
from distill.albert_tf import convert
from distill.errors import ConfigError
from distill.testing import ZH_VOCAB, write_albert_tf_checkpoint
from distill.tf_checkpoint import Checkpoint, CheckpointError, write_checkpoint

FIXTURES = Path(__file__).parent / "data" / "albert_tf"


# --- numpy reference: the TF models' forward pass, from the TF variables ---------------------------

def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, v, scope):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * v[f"{scope}/gamma"] + v[f"{scope}/beta"]


def dense(x, v, scope):
    return x @ v[f"{scope}/kernel"] + v[f"{scope}/bias"]


def tf_layer(x, mask, v, scope, parts, heads):
    """One post-LN block, as attention_ffn_block (Google) / transformer_model (brightmart) compute it."""
    q, k, val, out, ln1, ffn_in, ffn_out, ln2 = [f"{scope}{p}" for p in parts]
    b, t, h = x.shape
    split = lambda y: y.reshape(b, t, heads, h // heads).transpose(0, 2, 1, 3)  # noqa: E731
    scores = split(dense(x, v, q)) @ split(dense(x, v, k)).transpose(0, 1, 3, 2) / np.sqrt(h // heads)
    scores = scores + (1.0 - mask[:, None, None, :]) * -10000.0
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ split(dense(x, v, val))).transpose(0, 2, 1, 3).reshape(b, t, h)
    attended = layer_norm(dense(context, v, out) + x, v, ln1)
    return layer_norm(dense(gelu_tanh(dense(attended, v, ffn_in)), v, ffn_out) + attended, v, ln2)


GOOGLE_PARTS = ["attention_1/self/query", "attention_1/self/key", "attention_1/self/value", "attention_1/output/dense",
                "LayerNorm", "ffn_1/intermediate/dense", "ffn_1/intermediate/output/dense", "LayerNorm_1"]
BRIGHT_PARTS = ["attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense",
                "attention/output/LayerNorm", "intermediate/dense", "output/dense", "output/LayerNorm"]


def tf_forward(v, layout, ids, mask, cfg):
    v = {k: a.astype(np.float64) for k, a in v.items()}
    t = ids.shape[1]
    words = v["bert/embeddings/word_embeddings"][ids]
    if layout == "brightmart":  # embedding_lookup_factorized: project to H before positions and LayerNorm
        words = words @ v["bert/embeddings/word_embeddings_2"]
    x = words + v["bert/embeddings/position_embeddings"][:t] + v["bert/embeddings/token_type_embeddings"][np.zeros_like(ids)]
    x = layer_norm(x, v, "bert/embeddings/LayerNorm")
    if "bert/encoder/embedding_hidden_mapping_in/kernel" in v:
        x = dense(x, v, "bert/encoder/embedding_hidden_mapping_in")
    layers, groups = cfg["num_hidden_layers"], cfg.get("num_hidden_groups", 1)
    for layer in range(layers):
        if layout == "google":
            group = int(layer / layers * groups)
            for inner in range(cfg.get("inner_group_num", 1)):
                x = tf_layer(x, mask, v, f"bert/encoder/transformer/group_{group}/inner_group_{inner}/", GOOGLE_PARTS,
                             cfg["num_attention_heads"])
        else:
            x = tf_layer(x, mask, v, "bert/encoder/layer_shared/", BRIGHT_PARTS, cfg["num_attention_heads"])
    return x


def batch():
    ids = np.array([[3, 6, 9, 14, 15, 20, 4], [3, 7, 8, 4, 0, 0, 0]])
    return ids, (ids != 0).astype(np.float64)


def hf_outputs(model_dir, ids, mask):
    with torch.no_grad():
        out = AlbertModel.from_pretrained(model_dir).eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    return out.last_hidden_state.double().numpy()


# --- the reader and writer ----------------------------------------------------------------------

def test_checkpoint_round_trip_many_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(tf_checkpoint, "BLOCK_SIZE", 200)  # several data blocks and index entries
    rng = np.random.default_rng(0)
    tensors = {f"bert/encoder/layer_{i}/output/dense/kernel": rng.standard_normal((3, i + 1)).astype(np.float32)
               for i in range(40)}
    tensors.update({"global_step": np.array(7, np.int64), "half": np.ones((2, 2), np.float16), "f64": rng.standard_normal(3)})
    write_checkpoint(tmp_path / "model.ckpt", tensors)
    ckpt = Checkpoint(tmp_path)  # found through the `checkpoint` file
    assert set(ckpt.entries) == set(tensors)
    for name, value in tensors.items():
        got = ckpt.read(name)
        assert got.dtype == value.dtype and got.shape == value.shape and np.array_equal(got, value), name
    data = tf_checkpoint.read_table(tmp_path / "model.ckpt.index")
    assert [k for k, _ in data] == sorted(k for k, _ in data)  # the table keeps keys sorted


@pytest.mark.parametrize("layout", ["google", "brightmart"])
def test_reads_checkpoints_tensorflow_wrote(layout):
    """The committed checkpoints were saved by tf.raw_ops.SaveV2 from variables.npz (numpy's own format)."""
    expected = np.load(FIXTURES / layout / "variables.npz")
    ckpt = Checkpoint(FIXTURES / layout)
    assert set(ckpt.entries) == {k.replace("|", "/") for k in expected.files}
    for key in expected.files:
        got = ckpt.read(key.replace("|", "/"))
        assert got.dtype == expected[key].dtype and np.array_equal(got, expected[key]), key


@pytest.mark.parametrize("layout", ["google", "brightmart"])
def test_tensorflow_written_checkpoint_converts_exactly(tmp_path, layout):
    stored = np.load(FIXTURES / layout / "variables.npz")
    v = {k.replace("|", "/"): stored[k] for k in stored.files}
    out = convert(FIXTURES / layout, tmp_path / "hf")
    import json

    cfg = json.loads((FIXTURES / layout / "albert_config.json").read_text())
    ids, mask = batch()
    np.testing.assert_allclose(hf_outputs(out, ids, mask), tf_forward(v, layout, ids, mask, cfg), atol=1e-5)


# --- conversion ---------------------------------------------------------------------------------

GOOGLE_TO_HF = {"attention_1/self/query": "attention.query", "attention_1/self/key": "attention.key",
                "attention_1/self/value": "attention.value", "attention_1/output/dense": "attention.dense",
                "ffn_1/intermediate/dense": "ffn", "ffn_1/intermediate/output/dense": "ffn_output"}
GOOGLE_NORMS = {"LayerNorm": "attention.LayerNorm", "LayerNorm_1": "full_layer_layer_norm"}


def test_google_every_parameter_equals_its_variable(tmp_path):
    v = write_albert_tf_checkpoint(tmp_path / "tf", "google", groups=2, inner=2)
    model = AlbertForMaskedLM.from_pretrained(convert(tmp_path / "tf", tmp_path / "hf"))
    params = dict(model.named_parameters(remove_duplicate=False))
    checked = set()

    def same(hf, value):
        assert np.array_equal(params[hf].detach().numpy(), value), hf
        checked.add(hf)

    for g in range(2):
        for i in range(2):
            tf, hf = f"bert/encoder/transformer/group_{g}/inner_group_{i}/", f"albert.encoder.albert_layer_groups.{g}.albert_layers.{i}."
            for tf_part, hf_part in GOOGLE_TO_HF.items():
                same(f"{hf}{hf_part}.weight", v[f"{tf}{tf_part}/kernel"].T)
                same(f"{hf}{hf_part}.bias", v[f"{tf}{tf_part}/bias"])
            for tf_part, hf_part in GOOGLE_NORMS.items():
                same(f"{hf}{hf_part}.weight", v[f"{tf}{tf_part}/gamma"])
                same(f"{hf}{hf_part}.bias", v[f"{tf}{tf_part}/beta"])
    same("albert.embeddings.word_embeddings.weight", v["bert/embeddings/word_embeddings"])
    same("albert.embeddings.position_embeddings.weight", v["bert/embeddings/position_embeddings"])
    same("albert.embeddings.token_type_embeddings.weight", v["bert/embeddings/token_type_embeddings"])
    same("albert.embeddings.LayerNorm.weight", v["bert/embeddings/LayerNorm/gamma"])
    same("albert.embeddings.LayerNorm.bias", v["bert/embeddings/LayerNorm/beta"])
    same("albert.encoder.embedding_hidden_mapping_in.weight", v["bert/encoder/embedding_hidden_mapping_in/kernel"].T)
    same("albert.encoder.embedding_hidden_mapping_in.bias", v["bert/encoder/embedding_hidden_mapping_in/bias"])
    same("predictions.dense.weight", v["cls/predictions/transform/dense/kernel"].T)
    same("predictions.dense.bias", v["cls/predictions/transform/dense/bias"])
    same("predictions.LayerNorm.weight", v["cls/predictions/transform/LayerNorm/gamma"])
    same("predictions.LayerNorm.bias", v["cls/predictions/transform/LayerNorm/beta"])
    same("predictions.bias", v["cls/predictions/output_bias"])
    same("predictions.decoder.weight", v["bert/embeddings/word_embeddings"])  # tied
    same("predictions.decoder.bias", v["cls/predictions/output_bias"])
    assert checked == set(params) - {"albert.pooler.weight", "albert.pooler.bias"}  # AlbertForMaskedLM has no pooler
    pooler = AlbertModel.from_pretrained(tmp_path / "hf").pooler
    assert np.array_equal(pooler.weight.detach().numpy(), v["bert/pooler/dense/kernel"].T)


BRIGHT_TO_HF = {"attention/self/query": "attention.query", "attention/self/key": "attention.key",
                "attention/self/value": "attention.value", "attention/output/dense": "attention.dense",
                "intermediate/dense": "ffn", "output/dense": "ffn_output"}
BRIGHT_NORMS = {"attention/output/LayerNorm": "attention.LayerNorm", "output/LayerNorm": "full_layer_layer_norm"}


def test_brightmart_every_parameter_equals_its_variable(tmp_path):
    v = write_albert_tf_checkpoint(tmp_path / "tf", "brightmart")
    model = AlbertModel.from_pretrained(convert(tmp_path / "tf", tmp_path / "hf"))
    params = {k: p.detach().numpy() for k, p in model.named_parameters()}
    expected = {"embeddings.word_embeddings.weight": v["bert/embeddings/word_embeddings"] @ v["bert/embeddings/word_embeddings_2"],
                "embeddings.position_embeddings.weight": v["bert/embeddings/position_embeddings"],
                "embeddings.token_type_embeddings.weight": v["bert/embeddings/token_type_embeddings"],
                "embeddings.LayerNorm.weight": v["bert/embeddings/LayerNorm/gamma"],
                "embeddings.LayerNorm.bias": v["bert/embeddings/LayerNorm/beta"],
                "encoder.embedding_hidden_mapping_in.weight": np.eye(16), "encoder.embedding_hidden_mapping_in.bias": np.zeros(16),
                "pooler.weight": v["bert/pooler/dense/kernel"].T, "pooler.bias": v["bert/pooler/dense/bias"]}
    hf = "encoder.albert_layer_groups.0.albert_layers.0."
    for tf_part, hf_part in BRIGHT_TO_HF.items():
        expected[f"{hf}{hf_part}.weight"] = v[f"bert/encoder/layer_shared/{tf_part}/kernel"].T
        expected[f"{hf}{hf_part}.bias"] = v[f"bert/encoder/layer_shared/{tf_part}/bias"]
    for tf_part, hf_part in BRIGHT_NORMS.items():
        expected[f"{hf}{hf_part}.weight"] = v[f"bert/encoder/layer_shared/{tf_part}/gamma"]
        expected[f"{hf}{hf_part}.bias"] = v[f"bert/encoder/layer_shared/{tf_part}/beta"]
    assert set(expected) == set(params)
    for name, value in expected.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    assert model.config.embedding_size == model.config.hidden_size == 16 and model.config.num_hidden_groups == 1


@pytest.mark.parametrize("layout,kwargs", [
    ("google", dict(groups=2)),
    ("google", dict(groups=1, inner=2)),
    ("google", dict(groups=[0, 3, 6, 9], config_extra={"num_hidden_groups": 12})),  # *_google_fast: renumbered
    ("google", dict(hidden=8, embedding=8)),  # E == H: no mapping stored, identity
    ("brightmart", {}),
])
def test_forward_equals_numpy_tf_model(tmp_path, layout, kwargs):
    v = write_albert_tf_checkpoint(tmp_path / "tf", layout, **kwargs)
    if kwargs.get("embedding") == kwargs.get("hidden", 16):
        v = {k: a for k, a in v.items() if "embedding_hidden_mapping_in" not in k}
        write_checkpoint(tmp_path / "tf" / "model.ckpt-1000", v)
    import json

    cfg = json.loads((tmp_path / "tf" / "albert_config.json").read_text())
    out = convert(tmp_path / "tf", tmp_path / "hf")
    ids, mask = batch()
    np.testing.assert_allclose(hf_outputs(out, ids, mask), tf_forward(v, layout, ids, mask, cfg), atol=1e-5)


def test_brightmart_mlm_logits_follow_the_folded_formula(tmp_path):
    """albert_zh's get_masked_lm_output: logits = (LN(gelu(h K + b)) P^T) W^T + output_bias; after folding the
    HF head computes LN(gelu(h K + b)) (W P)^T + bias, the same numbers."""
    v = write_albert_tf_checkpoint(tmp_path / "tf", "brightmart")
    cfg = {"num_hidden_layers": 4, "num_attention_heads": 2}
    out = convert(tmp_path / "tf", tmp_path / "hf")
    ids, mask = batch()
    h = tf_forward(v, "brightmart", ids, mask, cfg)
    d = {k: a.astype(np.float64) for k, a in v.items()}
    transformed = layer_norm(gelu_tanh(dense(h, d, "cls/predictions/transform/dense")), d, "cls/predictions/transform/LayerNorm")
    expected = (transformed @ d["bert/embeddings/word_embeddings_2"].T) @ d["bert/embeddings/word_embeddings"].T
    expected += d["cls/predictions/output_bias"]
    with torch.no_grad():
        logits = AlbertForMaskedLM.from_pretrained(out).eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    np.testing.assert_allclose(logits.double().numpy(), expected, atol=1e-4)
    card = (out / "README.md").read_text()
    assert "folded" in card and "brightmart" in card


def test_output_loads_with_auto_classes(tmp_path):
    write_albert_tf_checkpoint(tmp_path / "tf", "brightmart")
    out = convert(tmp_path / "tf", tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(out)
    assert type(tok).__name__ == "BertTokenizer" and type(AutoModel.from_pretrained(out)).__name__ == "AlbertModel"
    assert tok.tokenize("我很喜欢这本书!") == ["我", "很", "喜", "欢", "这", "本", "书", "[UNK]"]  # char-level
    assert tok("好")["input_ids"] == [ZH_VOCAB.index("[CLS]"), ZH_VOCAB.index("好"), ZH_VOCAB.index("[SEP]")]
    assert (out / "vocab.txt").read_text(encoding="utf-8").split() == ZH_VOCAB


# --- bad input: one line, nothing written -------------------------------------------------------

def _preln(d):
    write_albert_tf_checkpoint(d, "brightmart", config_extra={"ln_type": "preln"})


def _unknown(d):
    v = write_albert_tf_checkpoint(d, "google")
    write_checkpoint(d / "model.ckpt-1000", {**v, "output_weights": np.zeros((2, 16), np.float32)})


def _shape(d):
    write_albert_tf_checkpoint(d, "google", config_extra={"intermediate_size": 25})


def _no_vocab(d):
    write_albert_tf_checkpoint(d, "google")
    (d / "vocab.txt").unlink()


def _vocab_size(d):
    write_albert_tf_checkpoint(d, "google")
    (d / "vocab.txt").write_text("\n".join(ZH_VOCAB[:-1]) + "\n", encoding="utf-8")


def _truncated(d):
    write_albert_tf_checkpoint(d, "google")
    shard = d / "model.ckpt-1000.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-100])


@pytest.mark.parametrize("make,message", [
    (_preln, "ln_type=preln"),
    (_unknown, "unknown variable output_weights"),
    (_shape, r"has shape \[16, 24\] but the config makes"),
    (_no_vocab, "no vocab file"),
    (_vocab_size, "has 36 tokens but the config's vocab_size is 37"),
    (_truncated, "is truncated"),
])
def test_bad_input_one_line_and_nothing_written(tmp_path, make, message):
    make(tmp_path / "tf")
    with pytest.raises(ConfigError, match=message) as err:
        convert(tmp_path / "tf", tmp_path / "out" / "hf")
    assert len(str(err.value).splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_corrupt_index_and_existing_output(tmp_path):
    write_albert_tf_checkpoint(tmp_path / "tf", "google")
    index = tmp_path / "tf" / "model.ckpt-1000.index"
    good = index.read_bytes()
    index.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    with pytest.raises(CheckpointError, match="block checksum"):
        Checkpoint(tmp_path / "tf")
    index.write_bytes(good)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("finished result")
    with pytest.raises(ConfigError, match="not empty"):
        convert(tmp_path / "tf", tmp_path / "hf")
    assert (tmp_path / "hf" / "keep.txt").read_text() == "finished result"


def test_command_line(tmp_path):
    shutil.copytree(FIXTURES / "google", tmp_path / "tf")
    run = lambda *a: subprocess.run([sys.executable, "-m", "distill", "convert", "albert-tf", *a],  # noqa: E731
                                    capture_output=True, text=True)
    ok = run(str(tmp_path / "tf"), str(tmp_path / "hf"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    (tmp_path / "tf" / "vocab.txt").unlink()
    bad = run(str(tmp_path / "tf"), str(tmp_path / "hf2"))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error: ")
    assert not (tmp_path / "hf2").exists()
