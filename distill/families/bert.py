"""BERT (and BERT-architecture teachers such as MiniLM): the layout the ALBERT student was modelled on."""

from distill.families.base import WORDPIECE, Family, pooler_and_linear

FAMILY = Family(
    name="bert",
    model_types=("bert",),
    layer_names={
        "attention.self.query": "attention.query",
        "attention.self.key": "attention.key",
        "attention.self.value": "attention.value",
        "attention.output.dense": "attention.dense",
        "attention.output.LayerNorm": "attention.LayerNorm",
        "intermediate.dense": "ffn",
        "output.dense": "ffn_output",
        "output.LayerNorm": "full_layer_layer_norm",
    },
    embedding_names={"word_embeddings": "word_embeddings", "position_embeddings": "position_embeddings",
                     "token_type_embeddings": "token_type_embeddings", "LayerNorm": "LayerNorm"},
    pieces=WORDPIECE,
    pair="bert",
    position_offset=lambda config: 0,
    head=pooler_and_linear,
)
