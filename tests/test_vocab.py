"""``python -m distill convert vocab``: an encoder reading another tokenizer's vocabulary (distill.vocab)."""

import torch
from transformers import AutoTokenizer, BertModel

from distill.cli import main
from distill.testing import write_tiny_family_teacher, write_tiny_teacher


def test_an_encoder_rebased_onto_another_vocabulary_computes_what_it_did(tmp_path, capsys):
    bert, bert_tok = write_tiny_teacher(tmp_path / "bert")
    _, mpnet_tok = write_tiny_family_teacher(tmp_path / "mpnet", "mpnet")  # RoBERTa's special tokens, one more word
    assert main(["convert", "vocab", str(tmp_path / "bert"), str(tmp_path / "mpnet"), str(tmp_path / "out")]) == 0
    assert f"{len(mpnet_tok) - 1} of {len(mpnet_tok)} tokens matched by string" in capsys.readouterr().out
    rebased, tok = BertModel.from_pretrained(tmp_path / "out").eval(), AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tok.get_vocab() == mpnet_tok.get_vocab() and rebased.config.pad_token_id == mpnet_tok.pad_token_id
    rows, source = rebased.get_input_embeddings().weight, bert.get_input_embeddings().weight
    for token, row in (("movie", "movie"), ("##ing", "##ing"), ("<s>", "[CLS]"), ("</s>", "[SEP]"), ("<pad>", "[PAD]")):
        assert torch.equal(rows[tok.convert_tokens_to_ids(token)], source[bert_tok.convert_tokens_to_ids(row)]), token
    assert torch.allclose(rows[tok.convert_tokens_to_ids("cinema")], source.mean(0))  # not in BERT's vocabulary
    # everything but the word table is the source's, so one sentence through either tokenizer gives the same states
    assert all(torch.equal(value, rebased.state_dict()[name]) for name, value in bert.state_dict().items()
               if "word_embeddings" not in name)
    bert.eval()
    text = "the movie was not very funny"
    with torch.no_grad():
        mine = rebased(**tok(text, return_tensors="pt", return_token_type_ids=False)).last_hidden_state
        theirs = bert(**bert_tok(text, return_tensors="pt")).last_hidden_state
    assert torch.equal(mine, theirs)


def test_convert_vocab_refuses_to_overwrite_a_model(tmp_path, capsys):
    write_tiny_teacher(tmp_path / "bert")
    capsys.readouterr()
    assert main(["convert", "vocab", str(tmp_path / "bert"), str(tmp_path / "bert"), str(tmp_path / "bert")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'bert'} already holds a model; give a new output directory"
    assert main(["convert", "vocab", str(tmp_path / "nothing"), str(tmp_path / "bert"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: source: the model {tmp_path / 'nothing'} cannot be loaded (")
    assert not (tmp_path / "out").exists()
