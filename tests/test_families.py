"""Teacher families (distill/families): scores captured, students copied, pairs encoded and words augmented for
BERT, RoBERTa and MPNet, each checked on a tiny random model of the family built here."""

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

from distill.attention import intermediates, use_score_attention
from distill.config import AugmentConfig, StudentInit, StudentShape
from distill.families import FAMILIES, family_of
from distill.families.base import BYTE_BPE, SENTENCEPIECE, WORDPIECE
from distill.layer_map import LayerMap
from distill.student import _albert_core, build_student
from distill.student_init import initialise, student_settings, student_shape
from distill.testing import write_tiny_family_teacher

TINY = ("bert", "roberta", "mpnet")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """{family: (directory, model, tokenizer)}: a fine-tuned-shaped tiny teacher of each family, in eval mode."""
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family in TINY:
        model, tok = write_tiny_family_teacher(root / family, family, head="sequence_classification")
        out[family] = (root / family, model.eval(), tok)
    return out


def padded(tok, texts=("good movie , great fun", "bad", "the plot was dull and the acting awful")):
    return dict(tok(list(texts), padding=True, return_tensors="pt"))


# the query and key projections of one layer, named as each family names them (written out, not read from the adapter)
QK = {"bert": ("attention.self.query", "attention.self.key"), "roberta": ("attention.self.query", "attention.self.key"),
      "mpnet": ("attention.attn.q", "attention.attn.k")}


@pytest.mark.parametrize("family", TINY)
def test_captured_scores_are_qk_over_sqrt_d_plus_mask_and_mpnets_bias(teachers, family):
    directory, model, tok = teachers[family]
    scored = use_score_attention(AutoModelForSequenceClassification.from_pretrained(directory).eval())
    batch = padded(tok)
    mask = batch["attention_mask"].bool()
    b, t = mask.shape
    with torch.no_grad():
        got = intermediates(scored, batch)
        ref = model(**batch, output_hidden_states=True)
        bias = model.base_model.encoder.compute_position_bias(ref.hidden_states[0]) if family == "mpnet" else 0.0
    torch.testing.assert_close(got.logits, ref.logits, atol=1e-5, rtol=0)  # capturing changes nothing computed
    heads, d = model.config.num_attention_heads, model.config.hidden_size // model.config.num_attention_heads
    real = mask[:, None, None, :].expand(b, heads, t, t)
    for layer, scores in enumerate(got.attention_scores):
        module, x = model.base_model.encoder.layer[layer], ref.hidden_states[layer]
        q, k = (module.get_submodule(name)(x).view(b, t, heads, d).transpose(1, 2) for name in QK[family])
        expected = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        torch.testing.assert_close(scores[real], expected[real], atol=1e-5, rtol=1e-5)
        assert (scores[~real] < -1e30).all()


def whole_copy(model, tok, **init):
    """A student of the model's full shape, every layer and the embeddings and head copied from it."""
    c = model.config
    shape = StudentShape(num_layers=c.num_hidden_layers, hidden_size=c.hidden_size, embedding_size=c.hidden_size,
                         num_heads=c.num_attention_heads, intermediate_size=c.intermediate_size, sharing="none",
                         max_position_embeddings=64)
    init = StudentInit(layers="teacher", source_layers="lowest", embedding="teacher", head="teacher", **init)
    student = build_student(student_shape(init, shape, c), tok, num_labels=c.num_labels, **student_settings(init, c))
    done = initialise(student.eval(), model, init, LayerMap("uniform", c.num_hidden_layers, c.num_hidden_layers), tok)
    return student, done


@pytest.mark.parametrize("family", ("bert", "roberta"))
def test_a_student_copying_all_of_a_teacher_reproduces_its_logits(teachers, family):
    """RoBERTa's positions start at row 2 and its head is dense + out_proj: copying rows one for one, or the head
    as BERT's, would give other logits."""
    _, model, tok = teachers[family]
    student, done = whole_copy(model, tok)
    batch = padded(tok)
    with torch.no_grad():
        expected, got = model(**batch).logits, student(**batch).logits
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert "approximate" not in done


def test_roberta_positions_are_copied_from_padding_idx_plus_one(teachers):
    _, model, tok = teachers["roberta"]
    student, _ = whole_copy(model, tok)
    table = _albert_core(student).embeddings.position_embeddings.weight
    theirs = model.base_model.embeddings.position_embeddings.weight
    assert family_of(model.config).position_offset(model.config) == 2 == model.config.pad_token_id + 1
    torch.testing.assert_close(table[:64], theirs[2:66])
    assert not torch.allclose(table[:64], theirs[:64])  # the off-by-two copy differs


def test_a_student_copied_from_mpnet_is_exact_but_for_the_relative_position_bias(teachers):
    """MPNet's relative position bias has no place in ALBERT: with it zeroed the copy is exact (so every other
    parameter went to the right place); with it, the copy is approximate and says so."""
    import copy

    _, tiny, tok = teachers["mpnet"]
    model = copy.deepcopy(tiny)
    with torch.no_grad():  # a bias as large as a trained model's (a random init's 0.02 barely moves the logits)
        model.base_model.encoder.relative_attention_bias.weight.normal_(0, 2.0, generator=torch.Generator().manual_seed(0))
    batch = padded(tok)
    student, done = whole_copy(model, tok)
    assert "relative position bias" in done["approximate"]
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        hidden = lambda m: m.base_model(**batch).last_hidden_state[real]  # noqa: E731  [tokens, H], LayerNorm'd
        assert (hidden(student) - hidden(model)).abs().max() > 1e-2  # 1e-6 without the bias (below)
        unbiased = copy.deepcopy(model)
        unbiased.base_model.encoder.relative_attention_bias.weight.zero_()
        torch.testing.assert_close(hidden(student), hidden(unbiased), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(student(**batch).logits, unbiased(**batch).logits, atol=1e-5, rtol=0)
    assert (_albert_core(student).embeddings.token_type_embeddings.weight == 0).all()  # MPNet has no token types


def test_xlm_roberta_copies_like_roberta():
    """XLM-R is RoBERTa's layout over a SentencePiece vocabulary."""
    from transformers import BertTokenizerFast

    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                              max_position_embeddings=40, type_vocab_size=1, layer_norm_eps=1e-5, num_labels=3)
    model = XLMRobertaForSequenceClassification(config).eval()
    assert family_of(config).name == "xlm-roberta" and family_of(config).pieces is SENTENCEPIECE
    tok = BertTokenizerFast(vocab={f"w{i}": i for i in range(40)}, unk_token="w3", pad_token="w1", cls_token="w0",
                            sep_token="w2", mask_token="w4")
    student, _ = whole_copy(model, tok)
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        torch.testing.assert_close(student(input_ids=ids, attention_mask=mask).logits,
                                   model(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", TINY)
def test_the_pair_format_is_the_tokenizers_own(teachers, family):
    _, model, tok = teachers[family]
    a, b = tok("good movie", add_special_tokens=False)["input_ids"], tok("bad plot", add_special_tokens=False)["input_ids"]
    ids, types = family_of(model.config).pair_ids(tok.cls_token_id, tok.sep_token_id, a, b)
    encoded = tok("good movie", "bad plot")
    assert ids == encoded["input_ids"]
    assert types == encoded.get("token_type_ids", [0] * len(ids))


def test_every_family_maps_every_albert_module_and_says_how_it_marks_pieces():
    assert {f.name for f in FAMILIES} == {"bert", "roberta", "xlm-roberta", "mpnet"}
    assert [WORDPIECE.starts_word(t) for t in ("good", "##s")] == [True, False]
    assert [BYTE_BPE.starts_word(t) for t in ("\u0120good", "ood")] == [True, False]
    assert BYTE_BPE.text("\u0120caf\u00c3\u00a9") == "café"  # GPT-2's byte alphabet decoded
    assert [SENTENCEPIECE.starts_word(t) for t in ("\u2581good", "s")] == [True, False]


def test_a_slice_of_another_model_starts_a_student_with_vocabularies_matched_by_token_string(teachers):
    """stage.init.source=<a BERT directory> for a student on an MPNet teacher's tokenizer: shared words keep the
    BERT's rows, special tokens are matched by role ([CLS] <- <s>), a word the BERT lacks starts at its mean row."""
    _, bert, bert_tok = teachers["bert"]
    _, _, mpnet_tok = teachers["mpnet"]
    c = bert.config
    shape = StudentShape(num_layers=2, hidden_size=32, embedding_size=32, num_heads=4, intermediate_size=20, sharing="none")
    init = StudentInit(layers="teacher", source_layers=[1, 3], embedding="teacher", head="teacher", source="somewhere")
    student = build_student(student_shape(init, shape, c), mpnet_tok, num_labels=2, **student_settings(init, c))
    done = initialise(student, bert, init, LayerMap("uniform", 2, 4), mpnet_tok, bert_tok)
    rows, theirs = _albert_core(student).embeddings.word_embeddings.weight, bert.get_input_embeddings().weight
    mine, source = mpnet_tok.get_vocab(), bert_tok.get_vocab()
    for student_token, source_token in [("good", "good"), ("##s", "##s"), ("<s>", "[CLS]"), ("</s>", "[SEP]"),
                                        ("<pad>", "[PAD]"), ("<unk>", "[UNK]"), ("<mask>", "[MASK]")]:
        torch.testing.assert_close(rows[mine[student_token]], theirs[source[source_token]])
    unmatched = [t for t in mine if t not in source and t not in ("<s>", "</s>", "<pad>", "<unk>", "<mask>")]
    assert unmatched == ["cinema"]
    assert done["vocab_matched"] == len(mine) - len(unmatched) and done["vocab_size"] == len(mine)
    for token in unmatched:
        torch.testing.assert_close(rows[mine[token]], theirs.mean(0))
    layer = _albert_core(student).encoder.albert_layer_groups[1].albert_layers[0]
    torch.testing.assert_close(layer.attention.query.weight, bert.base_model.encoder.layer[2].attention.self.query.weight)


def test_augmentation_proposes_words_with_a_byte_level_bpe_tokenizer(tmp_path):
    """With BPE no piece starts with '##' and 'Ġgood' is not letters: the family's piece rules find the words."""
    from distill.augment import build_augmenter

    directory = tmp_path / "roberta_mlm"
    write_tiny_family_teacher(directory, "roberta", head="masked_lm")
    for candidates in ("mlm", "neighbours"):
        # a random masked LM's top predictions are mostly pieces that continue a word: ask for many
        aug = AugmentConfig(model=str(directory), cache_dir=str(tmp_path / "cache"), num_candidates=40, copies=4, p=1.0,
                            candidates=candidates)
        augmenter = build_augmenter(aug, ["sentence"])
        found = augmenter.candidates(["the movie was good and the acting great"])[0]
        words = {w.text: c for w, c in found}
        assert {"movie", "good", "acting", "great"} <= set(words)  # stop words left alone
        assert all(c and all(x.isalpha() and "\u0120" not in x for x in c) for c in words.values())
        import numpy as np

        texts = ("the movie was good and the acting great",)
        variants = augmenter.variants(texts, [found], np.random.default_rng(0))
        assert variants and all(v != texts for v in variants)


def test_a_tokenizer_without_the_familys_marks_is_read_by_its_family(teachers):
    """MPNet uses WordPiece under RoBERTa's special tokens: its '##s' continues a word."""
    from distill.augment import split_words

    directory, model, _ = teachers["mpnet"]
    tok = AutoTokenizer.from_pretrained(directory)
    _, [words] = split_words(["good movies"], tok, family_of(model.config).pieces)
    assert [(w.text, len(w.piece_ids)) for w in words] == [("good", 1), ("movies", 2)]


@pytest.mark.parametrize("family", ("roberta", "mpnet"))
def test_every_stage_runs_on_a_teacher_of_the_family(tmp_path, family):
    """teacher -> general -> task (from the general student), and recipe=fast (copied from the fine-tuned teacher,
    the logits gap recorded); for MPNet also a student started from a slice of a BERT (stage.init.source)."""
    import json
    import sys
    from pathlib import Path

    from distill.stages import run
    from distill.testing import write_tiny_workspace

    sys.path.insert(0, str(Path(__file__).parent))
    from test_pipeline import compose_cfg  # noqa: E402

    ws = write_tiny_workspace(tmp_path, 48, 16, {"bert": "base"})
    write_tiny_family_teacher(ws / "teacher", family)  # the workspace's teacher, of this family
    teacher = run(compose_cfg(ws, "stage=teacher"))
    finetuned = ws / "runs" / "teacher" / "sst2" / "model"
    assert json.loads((finetuned / "config.json").read_text())["model_type"] == family and teacher["eval"]["teacher"]
    # MiniLMv2's relations too: Q, K, V captured from the family's own projections (mpnet: attn.q/k/v)
    general = run(compose_cfg(ws, "stage=general", "stage.phases.0.weights.relation=1.0", "stage.loss.relation_heads=4"))
    assert {"hidden", "attention", "relation"} <= set(general["losses"]) and general["losses"]["relation"] > 0
    task = run(compose_cfg(ws, "stage=task"))
    assert task["student_init"]["general_student"] and {"hidden", "attention", "soft_ce"} <= set(task["losses"])

    wide = ["student.hidden_size=32", "student.embedding_size=32", "student.intermediate_size=20", "student.sharing=none"]
    fast = run(compose_cfg(ws, "recipe=fast", *wide, f"run_dir={tmp_path / 'fast'}"))
    gap = fast["student_init"]["logits_gap"]
    assert gap["examples"] > 0 and gap["mean_abs"] >= 0 and 0 <= gap["same_class"] <= 1
    assert ("approximate" in fast["student_init"]) == (family == "mpnet")
    if family == "mpnet":
        sliced = run(compose_cfg(ws, "recipe=fast", *wide, f"stage.init.source={ws / 'bert'}", f"run_dir={tmp_path / 'slice'}"))
        init = sliced["student_init"]
        assert init["teacher"] == str(ws / "bert") and "approximate" not in init
        assert init["vocab_matched"] == init["vocab_size"] - 1  # all but 'cinema': specials matched by role
        # a general student started from that slice, shared and factorised (mpnet_shared_general): it is built with
        # BERT's two token types and epsilon, not MPNet's one and 1e-5, and the task stage builds its student alike
        shared = [*wide, "student.embedding_size=8", "student.sharing=all", "stage.init.shared_block=mean"]
        run(compose_cfg(ws, "stage=general", *shared, f"stage.init.source={ws / 'bert'}", "stage.init.layers=teacher",
                        "stage.init.embedding=svd_train", f"run_dir={tmp_path / 'general_slice'}"))
        from_general = run(compose_cfg(ws, "recipe=base_teacher", *shared, "stage.init.layers=random",
                                       "stage.init.embedding=random", "stage.init.head=random",
                                       f"general_student={tmp_path / 'general_slice' / 'model'}",
                                       f"run_dir={tmp_path / 'from_general'}"))
        assert from_general["student_init"] == {"general_student": str(tmp_path / "general_slice" / "model")}
        saved = {name: json.loads((tmp_path / name / "model" / "config.json").read_text())
                 for name in ("general_slice", "from_general")}
        bert = json.loads((ws / "bert" / "config.json").read_text())
        assert json.loads((finetuned / "config.json").read_text())["layer_norm_eps"] != bert["layer_norm_eps"]
        for key in ("type_vocab_size", "layer_norm_eps"):
            assert saved["from_general"][key] == saved["general_slice"][key] == bert[key]
        # its head, when copied, comes from stage.init.source (the slice's BERT), as the checks read it, not the teacher
        from distill.hf import load_model, load_tokenizer
        from distill.stages.task import build_task_student
        from distill.teacher import FrozenTeacher

        headed = compose_cfg(ws, "recipe=base_teacher", *shared, "stage.init.layers=random", "stage.init.embedding=random",
                             f"stage.init.source={ws / 'bert'}", f"general_student={tmp_path / 'general_slice' / 'model'}")
        mpnet = FrozenTeacher(load_model(str(finetuned), head="sequence_classification", trained_head=True))
        student, done = build_task_student(headed, load_tokenizer(str(finetuned)), mpnet, None)
        assert done == {"general_student": str(tmp_path / "general_slice" / "model"), "head": "teacher"}
        bert_model = load_model(str(ws / "bert"))
        bert_pooler = family_of(bert_model.config).head(bert_model)[0]
        assert torch.equal(student.albert.pooler.weight, bert_pooler.weight)
        # the MPNet screen's fullest row (distill/studies/mpnet_screen.yaml): augmented data (neighbours: no masked-LM
        # head), hidden states through W_h and Q/K/V relations with the logits; later epochs read all three stores
        layers = run(compose_cfg(ws, "recipe=fast", *wide, f"stage.init.source={ws / 'bert'}", "augment.enabled=true",
                                 "augment.copies=1", "train.max_steps=-1", "stage.phases.0.epochs=2",
                                 "stage.phases.0.weights.hidden=1.0",
                                 "stage.phases.0.weights.relation=1.0", "stage.loss.relation_heads=4",
                                 "stage.loss.balance=initial", f"run_dir={tmp_path / 'layers'}"))
        assert {"hidden", "relation", "soft_ce", "hard_ce"} <= set(layers["losses"])
        assert layers["augment"]["rows"] > layers["augment"]["examples"] and layers["train_examples"] == layers["augment"]["rows"]
        outputs = layers["teacher_outputs"]["prediction"]
        assert outputs["live_batches"] > 0 and outputs["stored_batches"] > 0
        # the preset for base-class teachers as it ships (recipe=base_teacher: the slice, x4 augmented data, logits and
        # labels, 3 epochs), but for its source: the tiny BERT stands in for the packaged MiniLM
        preset = run(compose_cfg(ws, "recipe=base_teacher", *wide, f"stage.init.source={ws / 'bert'}",
                                 "train.max_steps=-1", f"run_dir={tmp_path / 'preset'}"))
        assert preset["student_init"]["teacher"] == str(ws / "bert") and set(preset["losses"]) == {"soft_ce", "hard_ce", "loss"}
        assert preset["augment"]["examples"] < preset["augment"]["rows"] == preset["train_examples"]
        assert [e["examples"] for e in preset["phases"]["prediction"]["epochs"]] == [preset["train_examples"]] * 3
        outputs = preset["teacher_outputs"]["prediction"]
        assert outputs["live_batches"] > 0 and outputs["stored_batches"] > 0


def test_a_model_that_declares_a_masked_lm_head_but_ships_none_has_none(tmp_path):
    """all-mpnet-base-v2's config.json says MPNetForMaskedLM, but its weights hold the encoder alone: reading its
    'masked-LM logits' would read a random head. The weights' names decide."""
    from distill.hf import has_mlm_head, load_config

    model, _ = write_tiny_family_teacher(tmp_path / "declared", "mpnet", head="base")
    model.config.architectures = ["MPNetForMaskedLM"]
    model.config.save_pretrained(tmp_path / "declared")
    write_tiny_family_teacher(tmp_path / "real", "mpnet", head="masked_lm")
    assert load_config(str(tmp_path / "declared")).architectures == ["MPNetForMaskedLM"]
    assert not has_mlm_head(load_config(str(tmp_path / "declared")))
    assert has_mlm_head(load_config(str(tmp_path / "real")))


def test_source_layers_map_follows_the_layer_maps_kind_onto_a_source_of_another_depth():
    """A 3-layer student of a 12-layer teacher copied from a 6-layer MiniLM: 'map' takes the uniform map onto 6
    layers (2, 4, 6), not the teacher's 4, 8, 12 (which the source does not have)."""
    from distill.errors import LayerMapError
    from distill.student_init import source_teacher_layers

    init = StudentInit(layers="teacher", source_layers="map")
    assert source_teacher_layers(init, LayerMap("uniform", 3, 12), 3) == [4, 8, 12]
    assert source_teacher_layers(init, LayerMap("uniform", 3, 12), 3, 6) == [2, 4, 6]
    assert source_teacher_layers(init, LayerMap("last", 3, 12), 3, 6) == [4, 5, 6]
    with pytest.raises(LayerMapError, match=r"the list \[3, 9, 12\] names teacher layers of a 12-layer model"):
        source_teacher_layers(init, LayerMap([3, 9, 12], 3, 12), 3, 6)


def test_a_source_classifier_for_another_label_set_is_left_out(tmp_path):
    """stage.init.source=<a model fine-tuned on 3 labels> for a 2-label student: its pooler is copied, its
    classifier is not (shapes differ) and the student's stays as built, said in the log, not a shape traceback."""
    from distill.student_init import copy_teacher_head

    source, tok = write_tiny_family_teacher(tmp_path / "three", "roberta", head="sequence_classification", num_labels=3)
    c = source.config
    student = build_student(StudentShape(num_layers=2, hidden_size=32, embedding_size=32, num_heads=4, intermediate_size=20),
                            tok, num_labels=2)
    before = student.classifier.weight.clone()
    copy_teacher_head(student, source)
    assert c.num_labels == 3
    torch.testing.assert_close(_albert_core(student).pooler.weight, source.classifier.dense.weight)
    torch.testing.assert_close(student.classifier.weight, before)
