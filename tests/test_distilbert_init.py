"""DistilBERT's losses on a tiny masked-LM teacher, and student initialisation from the teacher."""

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig

from distill.attention import use_score_attention
from distill.config import StudentInit
from distill.config import LossOptions, LossWeights
from distill.config import StudentShape
from distill.errors import ConfigError
from distill.hf import load_model
from distill.layer_map import LayerMap
from distill.objective import Objective, TokenMasker
from distill.student import load_albert_body
from distill.student import _albert_core, build_student
from distill.student_init import copy_teacher_embeddings, copy_teacher_layers, student_settings, svd_embeddings
from distill.teacher import FrozenTeacher
from distill.testing import write_tiny_teacher, write_tiny_workspace

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import compose_cfg  # noqa: E402

# the tiny teacher's width, FFN and heads (distill.testing.tiny_bert_config), 2 of its 4 layers
SAME_WIDTH = StudentShape(num_layers=2, hidden_size=32, embedding_size=32, num_heads=4, intermediate_size=37,
                          sharing="none", hidden_act="gelu", max_position_embeddings=64)


@pytest.fixture(scope="module")
def mlm_teacher_dir(tmp_path_factory):
    """A tiny BertForMaskedLM that has learnt a little: its predictions carry signal, as a real teacher's do."""
    d = tmp_path_factory.mktemp("mlm_teacher")
    torch.manual_seed(2)
    model, tok = write_tiny_teacher(d, head="masked_lm")
    texts = ["the movie was very good", "a fun story and great acting", "the plot was dull and bad", "it is the best film"]
    batch = tok(texts, padding=True, return_tensors="pt")
    masker = TokenMasker(tok, 0.3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        masked = masker(dict(batch))
        loss = model(input_ids=masked["input_ids"], attention_mask=masked["attention_mask"], labels=masked["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(d)
    return d


def test_distilbert_terms_finite_and_decreasing(mlm_teacher_dir, tokenizer, padded_batch):
    teacher = FrozenTeacher(load_model(str(mlm_teacher_dir), head="masked_lm"))
    student = build_student(SAME_WIDTH, tokenizer, masked_lm=True)
    layer_map = LayerMap("uniform", 2, 4)
    copy_teacher_layers(student, teacher.model, StudentInit(layers="teacher"), layer_map)
    use_score_attention(student)
    weights = LossWeights(soft_ce=5.0, mlm=2.0, cosine=1.0)
    options = LossOptions(temperature=2.0, scale_by_t2=True)
    objective = Objective(student, weights, teacher, layer_map, options, TokenMasker(tokenizer, 0.3))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    batch = {k: v for k, v in padded_batch.items() if k != "labels"}
    history = []
    for _ in range(8):
        torch.manual_seed(0)  # the same masks every step: the terms must fall, not just move
        loss, terms = objective(batch)
        assert set(terms) == {"soft_ce", "mlm", "cosine"} and all(torch.isfinite(v) for v in terms.values())
        history.append({k: v.item() for k, v in terms.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for term in ("soft_ce", "mlm", "cosine"):
        assert history[-1][term] < history[0][term], (term, [h[term] for h in history])


def test_masking_is_bert_style(tokenizer, padded_batch):
    torch.manual_seed(0)
    ids = padded_batch["input_ids"].repeat(50, 1)
    batch = {"input_ids": ids, "attention_mask": padded_batch["attention_mask"].repeat(50, 1)}
    masked = TokenMasker(tokenizer, 0.15)(batch)
    chosen = masked["labels"] != -100
    real = (batch["attention_mask"] == 1) & ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert not (chosen & ~real).any()  # never [CLS], [SEP] or padding
    assert 0.10 < chosen.sum() / real.sum() < 0.20
    became_mask = (masked["input_ids"] == tokenizer.mask_token_id) & chosen
    assert 0.7 < became_mask.sum() / chosen.sum() < 0.9
    assert torch.equal(masked["labels"][chosen], ids[chosen])


def test_from_teacher_layers_compute_the_teachers_layers(mlm_teacher_dir, tokenizer):
    teacher = AutoModelForMaskedLM.from_pretrained(mlm_teacher_dir).eval()
    student = build_student(SAME_WIDTH, tokenizer).eval()
    layer_map = LayerMap("uniform", 2, 4)
    assert copy_teacher_layers(student, teacher, StudentInit(layers="teacher"), layer_map) == [[2], [4]]
    copy_teacher_embeddings(student, teacher)
    ids = tokenizer(["the movie was good", "bad"], padding=True, return_tensors="pt")
    # embeddings: the same output
    t_emb = teacher.base_model.embeddings(input_ids=ids["input_ids"])
    s_core = _albert_core(student)
    s_emb = s_core.encoder.embedding_hidden_mapping_in(s_core.embeddings(input_ids=ids["input_ids"]))
    torch.testing.assert_close(s_emb, t_emb, atol=1e-5, rtol=0)
    # each student layer applied to an input equals teacher layer G(m) applied to it
    x = torch.randn(2, ids["input_ids"].shape[1], 32)
    for m, g in ((1, 2), (2, 4)):
        t_out = teacher.base_model.encoder.layer[g - 1](x)
        t_out = t_out[0] if isinstance(t_out, tuple) else t_out
        s_out = s_core.encoder.albert_layer_groups[m - 1].albert_layers[0](x)
        s_out = s_out[0] if isinstance(s_out, tuple) else s_out
        torch.testing.assert_close(s_out, t_out, atol=1e-5, rtol=0)


def _embedding_output(student, batch):
    core = _albert_core(student.eval())
    return core.encoder.embedding_hidden_mapping_in(core.embeddings(**batch))


def _top_projector(centred, weights, k):
    """The projector onto the top k eigenvectors of X_c^T diag(w) X_c: by eigh, not SVD."""
    vecs = torch.linalg.eigh(centred.T @ (weights[:, None] * centred)).eigenvectors[:, -k:]  # ascending: the top k
    return vecs @ vecs.T


def _shape(E):
    return StudentShape(num_layers=2, hidden_size=32, embedding_size=E, num_heads=4, intermediate_size=37,
                        sharing="all", max_position_embeddings=64)


@torch.no_grad()
def test_svd_embeddings_give_the_sources_embedding_output(mlm_teacher_dir, tokenizer):
    """embedding=svd: at E = H the student's embeddings, mapped to H, compute the source's embedding output
    LN_H(word + position + type); at E < H, the source's LayerNorm of that sum projected onto the top E-1
    directions of the centred word table. Both against the source's own modules."""
    teacher = AutoModelForMaskedLM.from_pretrained(mlm_teacher_dir).eval()
    emb = teacher.base_model.embeddings
    batch = {k: v for k, v in tokenizer(["the movie was very good", "it is the best"], padding=True,
                                        return_tensors="pt").items() if k in ("input_ids", "token_type_ids")}
    batch["token_type_ids"][1, 3:] = 1  # a second segment: the type rows must come along too
    full = build_student(_shape(32), tokenizer)
    _, kept = svd_embeddings(full, teacher)
    torch.testing.assert_close(_embedding_output(full, batch), emb(**batch), atol=1e-4, rtol=1e-4)
    assert kept["kept_table"] == pytest.approx(1.0, abs=1e-4)

    low = build_student(_shape(8), tokenizer)
    S, kept = svd_embeddings(low, teacher)
    X = emb.word_embeddings.weight
    P = _top_projector(X - X.mean(1, keepdim=True), torch.ones(len(X)), 7)
    ids, types = batch["input_ids"], batch["token_type_ids"]
    z = emb.word_embeddings(ids) + emb.position_embeddings.weight[: ids.shape[1]] + emb.token_type_embeddings(types)
    torch.testing.assert_close(_embedding_output(low, batch), emb.LayerNorm((z - z.mean(-1, keepdim=True)) @ P),
                               atol=1e-4, rtol=1e-4)
    assert set(kept) == {"kept_table"} and kept["kept_table"] == pytest.approx((S[:7].pow(2).sum() / S.pow(2).sum()).item(), abs=1e-4)
    assert kept["kept_table"] < 0.99  # rank 7 of 31 really discards something


@torch.no_grad()
def test_svd_train_keeps_the_directions_of_the_training_sums(mlm_teacher_dir, tokenizer):
    """embedding=svd_train: the moment of the training tokens' centred embedding sums, against a token-by-token
    loop; its top eigenvectors as the kept subspace (against eigh of the same sums); the student's rows are the
    centred rows' coordinates in it; and the trade is real: more of the sums kept, less of the whole table."""
    from datasets import Dataset

    from distill.student_init import embedding_sums_moment

    teacher = AutoModelForMaskedLM.from_pretrained(mlm_teacher_dir)
    emb = teacher.base_model.embeddings
    X, positions = emb.word_embeddings.weight, emb.position_embeddings.weight
    rows = Dataset.from_dict({"input_ids": [[2, 7, 7, 9, 3], [2, 11, 3], [2, 7, 12, 13, 14, 3]],
                              "token_type_ids": [[0, 0, 0, 0, 0], [0, 0, 0], [0, 0, 0, 1, 1, 1]]})
    sums = torch.stack([X[i] + positions[p] + emb.token_type_embeddings.weight[t]
                        for ids, types in zip(rows["input_ids"], rows["token_type_ids"])
                        for p, (i, t) in enumerate(zip(ids, types))])
    sums = sums - sums.mean(1, keepdim=True)
    plain, fitted = build_student(_shape(8), tokenizer), build_student(_shape(8), tokenizer)
    moment, tokens = embedding_sums_moment(fitted, teacher, X, rows, chunk=4)  # chunks split rows: still the same
    assert tokens == 14
    torch.testing.assert_close(moment, sums.T @ sums, atol=1e-4, rtol=1e-5)
    svd_embeddings(plain, teacher)
    _, kept = svd_embeddings(fitted, teacher, moment=moment)

    def to_student(student):  # B Q^T [H, E]: the map's weight without its sqrt(H/E) diag(gamma)
        return _albert_core(student).encoder.embedding_hidden_mapping_in.weight / (4**0.5 * emb.LayerNorm.weight[:, None])

    B = to_student(fitted)
    torch.testing.assert_close(B @ B.T, _top_projector(sums, torch.ones(len(sums)), 7), atol=1e-4, rtol=0)
    Xc = X - X.mean(1, keepdim=True)
    torch.testing.assert_close(_albert_core(fitted).embeddings.word_embeddings.weight, Xc @ B)

    def kept_of(student, Z):
        P = to_student(student) @ to_student(student).T
        return ((Z @ P).pow(2).sum() / Z.pow(2).sum()).item()

    assert kept_of(fitted, sums) > kept_of(plain, sums) and kept_of(fitted, Xc) < kept_of(plain, Xc)
    assert kept["kept_train"] == pytest.approx(kept_of(fitted, sums), abs=1e-4)
    assert kept["kept_table"] == pytest.approx(kept_of(fitted, Xc), abs=1e-4)
    with pytest.raises(ValueError, match="svd_train needs the stage's training rows"):
        embedding_sums_moment(fitted, teacher, X, None)


def test_albert_dir_init(tokenizer, tmp_path):
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=20, sharing="all")
    source = build_student(shape, tokenizer)
    source.save_pretrained(tmp_path / "albert")
    student = build_student(shape, tokenizer, num_labels=2)
    vocab = tokenizer.get_vocab()
    load_albert_body(student, str(tmp_path / "albert"), vocab, field="stage.init.albert_dir")
    assert torch.equal(student.albert.embeddings.word_embeddings.weight, source.embeddings.word_embeddings.weight)
    with pytest.raises(ConfigError, match=f"has a vocabulary of {len(tokenizer)} but the teacher's tokenizer has 99"):
        load_albert_body(student, str(tmp_path / "albert"), {str(i): i for i in range(99)}, field="stage.init.albert_dir")
    # the same size, two tokens swapped: refused once the ALBERT's own tokenizer is beside it
    load_albert_body(student, str(tmp_path / "albert"), {**vocab, "good": vocab["bad"], "bad": vocab["good"]}, field="x")
    tokenizer.save_pretrained(tmp_path / "albert")
    with pytest.raises(ConfigError, match="another vocabulary than the teacher's tokenizer"):
        load_albert_body(student, str(tmp_path / "albert"), {**vocab, "good": vocab["bad"], "bad": vocab["good"]}, field="x")
    wider = build_student(StudentShape(num_layers=2, hidden_size=32, embedding_size=8, num_heads=4,
                                       intermediate_size=20, sharing="all"), tokenizer, num_labels=2)
    with pytest.raises(ConfigError, match="does not match the student's shape"):
        load_albert_body(wider, str(tmp_path / "albert"), vocab, field="stage.init.albert_dir")


def test_a_saved_albert_body_brings_its_own_settings(tokenizer, tmp_path):
    """A student that starts from a saved ALBERT (stage.init.albert_dir, or a general student) is built with that
    ALBERT's token-type rows and LayerNorm epsilon, not the source's: a table of another size would not load, and
    another epsilon would load and compute something else without a word."""
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=20, sharing="all")
    build_student(shape, tokenizer, type_vocab_size=1, layer_norm_eps=1e-5).save_pretrained(tmp_path / "albert")
    bert = BertConfig(type_vocab_size=2, layer_norm_eps=1e-12)
    body = {"type_vocab_size": 1, "layer_norm_eps": 1e-5}
    assert student_settings(StudentInit(albert_dir=str(tmp_path / "albert")), bert) == body
    assert student_settings(StudentInit(head="teacher"), bert, tmp_path / "albert", "general_student") == body
    # nothing saved: the source's token types, and its epsilon only when something of it is copied
    assert student_settings(StudentInit(), bert) == {"type_vocab_size": 2}
    assert student_settings(StudentInit(layers="teacher"), bert) == {"type_vocab_size": 2, "layer_norm_eps": 1e-12}
    # the source's norms copied over a body of another epsilon: one of them would compute something else
    with pytest.raises(ConfigError, match=r"^stage.init.albert_dir=.*albert has layer_norm_eps=1e-05 but what "
                                          r"stage.init.layers/embedding copy from stage.init.source needs 1e-12"):
        student_settings(StudentInit(albert_dir=str(tmp_path / "albert"), layers="teacher"), bert)
    student = build_student(shape, tokenizer, num_labels=2, **body)
    load_albert_body(student, str(tmp_path / "albert"), tokenizer.get_vocab(), field="stage.init.albert_dir")
    assert student.config.layer_norm_eps == 1e-5 and student.albert.embeddings.LayerNorm.eps == 1e-5


@pytest.fixture(scope="module")
def ws(tmp_path_factory, mlm_teacher_dir):
    # "teacher" is compose_cfg's teacher: one without an MLM head
    return write_tiny_workspace(tmp_path_factory.mktemp("distilbert"), 48, 8, {"teacher": "base"})


DISTILBERT = ["recipe=distilbert", "student.num_layers=2", "student.hidden_size=32", "student.embedding_size=32",
              "student.num_heads=4", "student.intermediate_size=37", "student.max_position_embeddings=64"]


def test_distilbert_recipe_end_to_end(ws, mlm_teacher_dir, caplog):
    from distill.stages import run

    with_head = run(compose_cfg(ws, *DISTILBERT, f"teacher.name_or_path={mlm_teacher_dir}", f"run_dir={ws / 'a'}"))
    assert set(with_head["losses"]) == {"soft_ce", "mlm", "cosine", "loss"} and with_head["teacher_mlm_head"]
    assert with_head["init"] == {"layers": "teacher", "source_layers": "map", "shared_block": "first", "embedding": "teacher",
                                 "head": "random", "albert_dir": None, "source": "finetuned"}

    # the packaged-MiniLM case: no MLM head, the ce term is dropped with a warning
    without = run(compose_cfg(ws, *DISTILBERT, f"run_dir={ws / 'b'}"))
    assert set(without["losses"]) == {"mlm", "cosine", "loss"} and not without["teacher_mlm_head"]
    assert "no masked-LM head" in caplog.text
    with pytest.raises(ConfigError, match="teacher_mlm=required but the teacher .* has no masked-LM head"):
        run(compose_cfg(ws, *DISTILBERT, "stage.loss.teacher_mlm=required", f"run_dir={ws / 'c'}"))
    with pytest.raises(ConfigError, match=r"init.layers=teacher copies teacher layers, but student.hidden_size=16"):
        run(compose_cfg(ws, *DISTILBERT, "student.hidden_size=16", f"run_dir={ws / 'd'}"))
    with pytest.raises(ConfigError, match=r"stage.init.source=pretrained chooses between the task stage's two teachers"):
        run(compose_cfg(ws, *DISTILBERT, "stage.init.source=pretrained", f"run_dir={ws / 'e'}"))
    # the saved general student (with its MLM head) feeds the task stage's ALBERT body
    from transformers import AlbertModel

    AlbertModel.from_pretrained(ws / "a" / "model")


def test_masked_positions_only_logits_equal_full_logits(mlm_teacher_dir, tokenizer, padded_batch):
    from distill.attention import intermediates

    teacher = use_score_attention(AutoModelForMaskedLM.from_pretrained(mlm_teacher_dir)).eval()
    student = use_score_attention(build_student(SAME_WIDTH, tokenizer, masked_lm=True)).eval()
    batch = {k: v for k, v in padded_batch.items() if k != "labels"}
    at = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    at[0, 1], at[2, 3], at[2, 5] = True, True, True
    for model in (teacher, student):
        full = intermediates(model, batch)
        some = intermediates(model, batch, logits_at=at)
        assert some.logits.shape == (3, len(tokenizer))
        torch.testing.assert_close(some.logits, full.logits[at], atol=1e-5, rtol=0)
        for a, b in zip(some.hidden_states, full.hidden_states):
            torch.testing.assert_close(a, b)


def test_svd_init_names_the_shapes_it_needs():
    from distill.checks import init_shape_problems
    from distill.testing import tiny_bert_config

    source = tiny_bert_config(50)
    for embedding in ("svd", "svd_train"):
        init = StudentInit(embedding=embedding)
        assert init_shape_problems(init, _shape(8), source) == []
        assert init_shape_problems(init, _shape(1), source) == [
            f"stage.init.embedding={embedding} needs student.embedding_size >= 2 (one direction goes to the embedding "
            "LayerNorm's centring), got 1"]
        narrow = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=37)
        assert init_shape_problems(init, narrow, source) == [
            f"stage.init.embedding={embedding} needs student.hidden_size = teacher width (32), got 16"]
