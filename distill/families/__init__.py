"""Teacher families: one file each (``bert``, ``roberta`` with XLM-R, ``mpnet``; ``base`` says what a family states).

To add one, write its ``Family`` in a new file and list it in ``FAMILIES`` (docs/extending.md, "Add a teacher")."""

from __future__ import annotations

from distill.errors import ConfigError
from distill.families import bert, mpnet, roberta
from distill.families.base import ALBERT_EMBEDDINGS, ALBERT_LAYER, Family, Pieces

FAMILIES: tuple[Family, ...] = (bert.FAMILY, roberta.FAMILY, roberta.XLM_ROBERTA, mpnet.FAMILY)
BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}

for _family in FAMILIES:  # a family that forgets an ALBERT module would copy part of a layer and say nothing
    assert sorted(_family.layer_names.values()) == sorted(ALBERT_LAYER), _family.name
    assert sorted(_family.embedding_names) == sorted(ALBERT_EMBEDDINGS), _family.name


def family_of(config, field: str = "teacher.name_or_path") -> Family:
    """The family of a model's config, or a one-line error naming ``field`` and the supported families."""
    family = BY_MODEL_TYPE.get(config.model_type)
    if family is None:
        raise ConfigError(
            f"{field}: model_type '{config.model_type}' is not a supported teacher family "
            f"({', '.join(sorted(BY_MODEL_TYPE))}); use one of those, or add a family (docs/extending.md, 'Add a teacher')"
        )
    return family


__all__ = ["FAMILIES", "Family", "Pieces", "family_of"]
