"""MPNet (all-mpnet-base-v2, the offline BERT-base-class teacher): BERT's computation under other names
(``attention.attn.{q,k,v,o}``), plus a relative position bias added to every layer's scores, which ALBERT has no
place for: a student copied from MPNet computes approximately what it did. Positions from padding_idx + 1 as
RoBERTa, no token types, a RoBERTa-style classifier, RoBERTa's pair format, and BERT's WordPiece vocabulary.

MPNet's attention does not go through transformers' AttentionInterface, so its scores are captured by a forward
bound to each ``MPNetSelfAttention`` (``scores_forward``)."""

import math

from distill.families.base import WORDPIECE, Family, dense_and_out_proj


def scores_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
    """``MPNetSelfAttention.forward`` (transformers 5) returning the pre-softmax scores
    Q K^T / sqrt(d) + relative position bias + additive mask, [b, heads, q, k], instead of the probabilities."""
    shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(self.attention_head_size)
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = self.dropout(scores.softmax(dim=-1))
    context = (probs @ v).permute(0, 2, 1, 3).flatten(2)
    output = self.o(context)
    return (output, scores) if output_attentions else (output,)


FAMILY = Family(
    name="mpnet",
    model_types=("mpnet",),
    layer_names={
        "attention.attn.q": "attention.query",
        "attention.attn.k": "attention.key",
        "attention.attn.v": "attention.value",
        "attention.attn.o": "attention.dense",
        "attention.LayerNorm": "attention.LayerNorm",
        "intermediate.dense": "ffn",
        "output.dense": "ffn_output",
        "output.LayerNorm": "full_layer_layer_norm",
    },
    embedding_names={"word_embeddings": "word_embeddings", "position_embeddings": "position_embeddings",
                     "token_type_embeddings": None, "LayerNorm": "LayerNorm"},
    pieces=WORDPIECE,
    pair="roberta",
    position_offset=lambda config: config.pad_token_id + 1,
    head=dense_and_out_proj,
    score_forwards={"MPNetSelfAttention": scores_forward},
    approximate="MPNet adds a relative position bias (encoder.relative_attention_bias) to every layer's attention "
                "scores; ALBERT has no such term, so the copied student's attention differs from the teacher's",
)
