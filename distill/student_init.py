"""Student initialisation: from a source model's layers (the teacher's, or any pretrained model of a supported
family: ``stage.init.source``), from an SVD of its embeddings, or from an ALBERT.

These save most of general distillation's cost (DistilBERT initialises its student from every other teacher
layer). Which parameter goes where, the position offset and the head's shape come from the source's family
(``distill.families``); a source whose tokenizer differs from the student's gives its word embedding rows by token
string (``source_word_rows``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import pyarrow.compute as pc
import torch
from torch import nn

from distill.config import FACTORISED_EMBEDDINGS, StudentInit
from distill.errors import ConfigError
from distill.families import Family, family_of
from distill.layer_map import LayerMap
from distill.student import _albert_core, load_albert_body, saved_settings
from distill.vocab import transplant_embeddings

log = logging.getLogger("distill")

SPECIAL_ROLES = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")


def source_teacher_layers(init: StudentInit, layer_map: LayerMap | None, student_layers: int,
                          source_layers: int | None = None) -> list[int]:
    """The source layer (1-based) each student layer starts from (``stage.init.source_layers``). 'map' follows the
    stage's layer map, or the same kind of map onto a source of another depth than the teacher's (``source_layers``)."""
    if init.source_layers == "map":
        layer_map = layer_map.for_depth(source_layers) if source_layers else layer_map
        return [layer_map(m) for m in range(1, student_layers + 1)]
    if init.source_layers == "lowest":
        return list(range(1, student_layers + 1))
    return [int(x) for x in init.source_layers]


def student_shape(init: StudentInit, shape, source_cfg):
    """The shape to build: copied layers compute what the source's did only with the source's activation."""
    if init.layers == "teacher" and shape.hidden_act != source_cfg.hidden_act:
        return dataclasses.replace(shape, hidden_act=source_cfg.hidden_act)
    return shape


def student_settings(init: StudentInit, source_cfg, body: str | Path | None = None, field: str = "stage.init.albert_dir") -> dict:
    """ALBERT config settings no student.* field sets. From the source: its token-type rows, and, when anything is
    copied, its LayerNorm epsilon (RoBERTa's and MPNet's 1e-5 against BERT's 1e-12: copied norms compute what they
    did only with their own epsilon). A student that starts from a saved ALBERT body (``body``, named by ``field``:
    a general student, else ``init.albert_dir``) takes that body's instead: it was built with its own source's (a
    general student sliced from MiniLM has two token types and 1e-12 under MPNet's one and 1e-5)."""
    body = body or init.albert_dir
    if body:
        settings = saved_settings(body, field)
        # layers or an embedding copied over the body bring the source's norms: one epsilon cannot serve both
        if (init.layers, init.embedding) != ("random", "random") and settings["layer_norm_eps"] != source_cfg.layer_norm_eps:
            raise ConfigError(f"{field}={body} has layer_norm_eps={settings['layer_norm_eps']} but what stage.init.layers/"
                              f"embedding copy from stage.init.source needs {source_cfg.layer_norm_eps}; start from one "
                              f"of them (stage.init.layers=random and stage.init.embedding=random, or unset {field})")
        return settings
    settings = {"type_vocab_size": family_of(source_cfg).type_vocab_size(source_cfg)}
    if "teacher" in (init.layers, init.embedding, init.head) or init.embedding in FACTORISED_EMBEDDINGS:
        settings["layer_norm_eps"] = source_cfg.layer_norm_eps
    return settings


def ffn_importance(layer: nn.Module, family: Family) -> torch.Tensor:
    """Importance of each FFN unit j of an encoder layer: ||W_in[j, :]|| * ||W_out[:, j]|| (how much it can
    move the residual stream), [intermediate_size]. Cheap and data-free."""
    w_in, w_out = family.ffn(layer)
    return w_in.weight.norm(dim=1) * w_out.weight.norm(dim=0)


@torch.no_grad()
def copy_teacher_layers(student: nn.Module, teacher: nn.Module, init: StudentInit, layer_map: LayerMap) -> list[list[int]]:
    """Copy teacher layers into each student layer group; return the teacher layers behind each group.

    A group shared by several student layers takes its first member's teacher layer, or the mean of
    its members' layers (``init.shared_block``). A narrower student FFN keeps the teacher's units of
    highest ``ffn_importance`` (of the averaged layer), in their original order."""
    core = _albert_core(student)
    family = family_of(teacher.config)
    teacher_layers = family.layers(teacher)
    per_group = core.config.num_hidden_layers // core.config.num_hidden_groups
    wanted = source_teacher_layers(init, layer_map, core.config.num_hidden_layers, len(teacher_layers))
    sources = []
    for g, group in enumerate(core.encoder.albert_layer_groups):
        members = wanted[g * per_group:(g + 1) * per_group]
        chosen = members[:1] if init.shared_block == "first" else members
        source = copy.deepcopy(teacher_layers[chosen[0] - 1])
        for name, param in source.named_parameters():
            param.copy_(torch.stack([teacher_layers[t - 1].get_parameter(name) for t in chosen]).mean(0))
        keep = ffn_importance(source, family).argsort(descending=True)[: core.config.intermediate_size].sort().values
        target = group.albert_layers[0]
        for t_name, s_name in family.layer_names.items():
            t_mod, s_mod = source.get_submodule(t_name), target.get_submodule(s_name)
            weight, bias = t_mod.weight, t_mod.bias
            if s_name == "ffn":
                weight, bias = weight[keep], bias[keep]
            elif s_name == "ffn_output":
                weight = weight[:, keep]
            s_mod.weight.copy_(weight)
            s_mod.bias.copy_(bias)
        sources.append(chosen)
    return sources


@torch.no_grad()
def copy_teacher_head(student: nn.Module, teacher: nn.Module) -> None:
    """The source's pooler (dense + tanh on the first token, when the student pools that way) and, when it has one
    (a fine-tuned teacher), its classifier. A RoBERTa-style classifier (dense + tanh, then out_proj) is exactly
    ALBERT's pooler then classifier (``Family.head``)."""
    core = _albert_core(student)
    pooler, classifier = family_of(teacher.config).head(teacher)
    if core.pooler is not None and pooler is not None:
        core.pooler.load_state_dict(pooler.state_dict())
    if classifier is not None and hasattr(student, "classifier"):
        if classifier.weight.shape != student.classifier.weight.shape:  # a source fine-tuned on another label set
            log.warning("the source's classifier (%d labels) is not copied into the student's (%d): it starts at random",
                        classifier.weight.shape[0], student.classifier.weight.shape[0])
            return
        student.classifier.load_state_dict(classifier.state_dict())


def source_word_rows(source: nn.Module, tokenizer, source_tokenizer=None) -> tuple[torch.Tensor, dict]:
    """The source's word embedding rows in the student's vocabulary order [V, H], and how they were matched.

    With the student's own tokenizer (or an identical vocabulary) they are the source's rows. Otherwise each
    student token takes the row of the same string in the source's vocabulary; special tokens are matched by
    role ([CLS] <-> <s>, [SEP] <-> </s>, ...), and a token the source lacks starts at the mean of its rows."""
    weight = source.get_input_embeddings().weight.detach()
    vocab = tokenizer.get_vocab()
    if source_tokenizer is None or source_tokenizer.get_vocab() == vocab:
        return weight[: len(vocab)], {}
    aliases = {getattr(tokenizer, role): getattr(source_tokenizer, role) for role in SPECIAL_ROLES
               if getattr(tokenizer, role, None) and getattr(source_tokenizer, role, None)}
    source_vocab = source_tokenizer.get_vocab()
    by_id = sorted(source_vocab, key=source_vocab.get)
    student_tokens = [aliases.get(t, t) for t in sorted(vocab, key=vocab.get)]
    rows, matched = transplant_embeddings(weight[: len(by_id)], by_id, student_tokens)
    log.info("word embeddings: %d of the student's %d tokens found in the source's vocabulary; the rest start at "
             "the mean of its rows", matched, len(student_tokens))
    return rows, {"vocab_matched": matched, "vocab_size": len(student_tokens)}


def load_source(copies: tuple[str, str] | None, teacher: nn.Module, teacher_field: str):
    """(model, tokenizer or None) the student copies from, for ``Config.init_source``'s (field, name): the loaded
    teacher (read from ``teacher_field``) when it is that model or nothing is copied, else the named model and, for
    a model that is no teacher, its own tokenizer (the pretrained teacher shares the fine-tuned one's)."""
    from distill.hf import load_model, load_tokenizer

    if copies is None or copies[0] == teacher_field:
        return teacher, None
    field, name = copies
    model = load_model(name, field=field)
    return model, (load_tokenizer(name, field=field) if field == "stage.init.source" else None)


@torch.no_grad()
def logits_gap(student: nn.Module, teacher: nn.Module, rows, tokenizer, device, examples: int = 32) -> dict:
    """How far a freshly initialised student's logits start from the teacher's on the first ``examples`` rows of a
    tokenized split: mean |z_s - z_t| over classes, and the share of rows where both pick the same class. Logged."""
    from distill.data import eval_loader

    batch = {k: v.to(device) for k, v in next(iter(eval_loader(rows.select(range(min(examples, len(rows)))), tokenizer,
                                                                 examples))).items() if k != "labels"}
    was_training = student.training
    student.eval().to(device)
    z_s, z_t = student(**batch).logits.float(), teacher(**batch).logits.float()
    student.train(was_training)
    gap = {"examples": len(z_s), "mean_abs": round((z_s - z_t).abs().mean().item(), 4),
           "same_class": round((z_s.argmax(-1) == z_t.argmax(-1)).float().mean().item(), 4)}
    log.info("the initialised student against its teacher on %d selection examples: mean |logit gap| %.4f, same class "
             "for %.1f%%", gap["examples"], gap["mean_abs"], 100 * gap["same_class"])
    return gap


def initialise(student: nn.Module, source: nn.Module, init: StudentInit, layer_map: LayerMap, tokenizer,
               source_tokenizer=None, train_rows=None) -> dict:
    """Apply ``init`` to a freshly built student (``tokenizer``: the student's, which is the teacher's;
    ``source_tokenizer``: the source model's, when it is not the teacher; ``train_rows``: the stage's tokenized
    training rows, which ``embedding=svd_train`` fits the factorised embedding to); return what was done, for metrics.json."""
    done = {}
    if init.albert_dir:
        load_albert_body(student, init.albert_dir, tokenizer.get_vocab(), field="stage.init.albert_dir")
        done["albert_dir"] = init.albert_dir
    if init.layers == "teacher":
        done["teacher_layers"] = copy_teacher_layers(student, source, init, layer_map)
        log.info("student layer groups initialised from source layers %s", done["teacher_layers"])
    if init.embedding == "teacher" or init.embedding in FACTORISED_EMBEDDINGS:
        words, matched = source_word_rows(source, tokenizer, source_tokenizer)
        done |= matched
        if init.embedding == "teacher":
            copy_teacher_embeddings(student, source, words)
        else:
            done["svd"] = factorised_embeddings(student, source, words, init.embedding == "svd_train", train_rows)
    done["embedding"] = init.embedding
    if init.head == "teacher":
        copy_teacher_head(student, source)
    done["head"] = init.head
    approximate = family_of(source.config).approximate
    if approximate and "teacher" in (init.layers, init.embedding, init.head):
        done["approximate"] = approximate
        log.warning("the student copied from a %s model is approximate: %s", source.config.model_type, approximate)
    return done


def factorised_embeddings(student: nn.Module, source: nn.Module, words: torch.Tensor, from_train: bool,
                          train_rows=None) -> dict:
    """``svd_embeddings`` of the source's rows ``words``: the directions of its word table, or with ``from_train``
    those of the embedding sums the training rows make (``embedding_sums_moment``); what they keep, logged and
    returned for metrics.json."""
    moment, tokens = embedding_sums_moment(student, source, words, train_rows) if from_train else (None, 0)
    kept = svd_embeddings(student, source, words, moment)[1]
    log.info("rank-%d embeddings keep %.1f%% of the source's centred word table", student.config.embedding_size,
             100 * kept["kept_table"])
    if moment is not None:
        log.info("and %.1f%% of the centred embedding sums of the %d training tokens", 100 * kept["kept_train"], tokens)
        kept["train_tokens"] = tokens
    return kept


def _source_embedding_norm(source: nn.Module) -> nn.Module:
    """The LayerNorm the source applies to its embedding sum (its family names it)."""
    return source.base_model.embeddings.get_submodule(family_of(source.config).embedding_names["LayerNorm"])


def _centred(rows: torch.Tensor) -> torch.Tensor:
    """Each row less its mean over H: all of a row a LayerNorm reads."""
    return rows - rows.mean(1, keepdim=True)


def _source_tables(student: nn.Module, source: nn.Module):
    """(student table, source table or None, source row of student row 0) for the position and token-type tables."""
    family = family_of(source.config)
    s_emb, t_emb = _albert_core(student).embeddings, source.base_model.embeddings
    for name, offset in (("position_embeddings", family.position_offset(source.config)), ("token_type_embeddings", 0)):
        own = family.embedding_names[name]
        yield getattr(s_emb, name).weight, (getattr(t_emb, own).weight if own else None), offset


@torch.no_grad()
def copy_teacher_embeddings(student: nn.Module, source: nn.Module, words: torch.Tensor | None = None) -> None:
    """E = H = source width: its word rows ``words`` [V, H] (in the student's vocabulary order), its position table
    from its own position 0 (row ``position_offset``: RoBERTa's and MPNet's row 2), its token types (zero for a
    family without them, which adds none) and its LayerNorm, and an identity E -> H map. ``words`` defaults to the
    source's own rows (same vocabulary)."""
    core = _albert_core(student)
    words = source.get_input_embeddings().weight if words is None else words
    _copy_rows(core.embeddings.word_embeddings.weight, words, 0)
    for table, theirs, offset in _source_tables(student, source):
        _copy_rows(table, theirs, offset)
    core.embeddings.LayerNorm.load_state_dict(_source_embedding_norm(source).state_dict())
    mapping = core.encoder.embedding_hidden_mapping_in
    mapping.weight.copy_(torch.eye(mapping.weight.shape[0]))
    mapping.bias.zero_()


def _copy_rows(table: torch.Tensor, theirs: torch.Tensor | None, offset: int, basis: torch.Tensor | None = None) -> None:
    """table[i] = theirs[i + offset] (@ basis) for the rows both have; all zeros when the source has no table."""
    if theirs is None:
        table.zero_()
        return
    rows = min(table.shape[0], theirs.shape[0] - offset)  # position tables may differ in length
    source_rows = theirs[offset : offset + rows]
    table[:rows].copy_(source_rows @ basis if basis is not None else source_rows)


@torch.no_grad()
def embedding_sums_moment(student: nn.Module, source: nn.Module, words: torch.Tensor, rows,
                          chunk: int = 65536) -> tuple[torch.Tensor, int]:
    """sum over every token of the tokenized ``rows`` of z_c^T z_c [H, H], z = its word row (``words``, in the
    student's vocabulary order) + its position's and token type's rows of the source, z_c = z - mean_H(z): what the
    source's embedding LayerNorm reads on the stage's training data. Also the number of tokens."""
    if rows is None:
        raise ValueError("stage.init.embedding=svd_train needs the stage's training rows")
    table = rows.with_format("arrow")[:]
    ids = torch.from_numpy(pc.list_flatten(table["input_ids"]).to_numpy().astype("int64"))
    lengths = torch.from_numpy(pc.list_value_length(table["input_ids"]).to_numpy().astype("int64"))
    starts = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    positions = torch.arange(len(ids)) - starts  # each token's place in its row
    types = torch.from_numpy(pc.list_flatten(table["token_type_ids"]).to_numpy().astype("int64")) \
        if "token_type_ids" in table.column_names else torch.zeros_like(ids)
    (_, pos, offset), (_, typ, _) = _source_tables(student, source)
    moment = torch.zeros(words.shape[1], words.shape[1])
    for i in range(0, len(ids), chunk):
        z = words[ids[i : i + chunk]].float()
        if pos is not None:
            z = z + pos[positions[i : i + chunk] + offset].float()
        if typ is not None:
            z = z + typ[types[i : i + chunk]].float()
        z = _centred(z)
        moment += z.T @ z
    return moment, len(ids)


@torch.no_grad()
def svd_embeddings(student: nn.Module, source: nn.Module, words: torch.Tensor | None = None,
                   moment: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """A factorized V x E embedding whose output, once mapped to H, is the source's embedding output
    LN_H(w + p + t) (word, position and token-type rows; gamma, beta: its LayerNorm's) for every input whose centred
    sum lies in the k = min(E-1, H) directions kept, and the source's LayerNorm of its projection onto them otherwise.

    ALBERT normalises in E, before the E -> H map; the source in H. LN_H reads only the centred sum
    z_c = z - mean_H(z), and centring is linear, so each source table T is centred over H first (T_c). B [H, k]: the
    top k right singular vectors of X_c, the centred word rows ``words`` [V, H], which minimises
    sum_i ||x_c,i - x_c,i B B^T||^2 (Eckart-Young); or, given ``moment`` M = sum_t z_c,t^T z_c,t [H, H] over the
    training tokens t (``embedding_sums_moment``), its top k eigenvectors, which minimise the same error over the
    embedding sums those tokens make: the rank goes to what the stage's text puts into the first layer (its
    frequent words, its positions) rather than to a vocabulary it mostly does not read. Q [E, k]: orthonormal
    columns orthogonal to 1_E, so each student table T_c B Q^T [., E] has zero mean over E and the norms of T_c B,
    and LN_E(z_c B Q^T) = sqrt(E) z_c B Q^T / ||z_c B|| (LN_E: gamma 1, beta 0).
    The map's weight sqrt(H/E) diag(gamma) B Q^T [H, E] and bias beta then give
    sqrt(H) z_c B B^T / ||z_c B|| * gamma + beta = LN_H(z_c B B^T): exact at E = H, where all H-1 directions of the
    centred rows fit (LayerNorm epsilon aside). Set instead to the rank-E approximation of the raw table with the
    map alone, the copied layers would start from inputs the source never gave them (cosine 0.42 to MiniLM's
    embedding output at E=128). ``words`` defaults to the source's own rows.
    Returns the spectrum the basis came from (singular values of X_c, or eigenvalues of M) and the share of energy
    the kept directions hold: of the centred table, sum_i ||x_c,i||^2 (``kept_table``), and of the training sums,
    trace(M) (``kept_train``, given M).
    """
    core = _albert_core(student)
    words = (source.get_input_embeddings().weight if words is None else words).float()
    H, E = words.shape[1], core.config.embedding_size
    k = min(E - 1, H)  # one of E's directions goes to LN_E's centring
    centred = _centred(words)
    if moment is None:
        _, S, Vh = torch.linalg.svd(centred, full_matrices=False)
        basis = Vh[:k].T  # [H, k]
    else:
        S, vectors = torch.linalg.eigh(moment.double())  # ascending
        S, basis = S.flip(0).float(), vectors.flip(1)[:, :k].float()
    to_student = basis @ zero_mean_basis(E)[:, :k].T  # [H, E]
    core.embeddings.word_embeddings.weight.copy_(centred @ to_student)
    for table, theirs, offset in _source_tables(student, source):
        _copy_rows(table, None if theirs is None else _centred(theirs), offset, to_student)
    norm = _source_embedding_norm(source)
    core.embeddings.LayerNorm.weight.fill_(1.0)
    core.embeddings.LayerNorm.bias.zero_()
    mapping = core.encoder.embedding_hidden_mapping_in
    mapping.weight.copy_((H / E) ** 0.5 * norm.weight[:, None] * to_student)
    mapping.bias.copy_(norm.bias)
    energy, in_basis = centred.pow(2).sum(1), (centred @ basis).pow(2).sum(1)  # ||x B B^T|| = ||x B||: B orthonormal
    kept = {"kept_table": round((in_basis.sum() / energy.sum()).item(), 4)}
    if moment is not None:
        kept["kept_train"] = round((torch.trace(basis.T @ moment @ basis) / torch.trace(moment)).item(), 4)
    return S, kept


def zero_mean_basis(n: int) -> torch.Tensor:
    """[n, n-1]: orthonormal columns spanning the vectors whose entries sum to 0 (QR of the first n-1 columns of the
    centring matrix, which are independent)."""
    return torch.linalg.qr((torch.eye(n) - 1.0 / n)[:, : n - 1])[0]
