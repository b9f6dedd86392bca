"""Layer map G(m): which teacher layer each student layer learns from.

Index 0 is the embedding output on both sides, so G(0) = 0 always and the map
covers student layers m = 1..L_S with teacher layers G(m) in 1..L_T.
Attention has no index 0: student layer m's scores (``attention_scores[m-1]``)
learn from teacher layer G(m)'s scores (``attention_scores[G(m)-1]``).

Kinds:
- ``uniform`` (TinyBERT): G(m) = floor(m * L_T / L_S). When L_T = k * L_S this
  is exactly TinyBERT's k*m; otherwise floor keeps the map increasing and
  always sends the last student layer to the last teacher layer
  (6 -> 4 gives 1, 3, 4, 6).
- ``last``: the student's layers learn from the teacher's last L_S layers,
  G(m) = L_T - L_S + m.
- an explicit list ``[G(1), ..., G(L_S)]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from distill.errors import LayerMapError


class LayerMap:
    def __init__(self, kind: str | Sequence[int], student_layers: int, teacher_layers: int):
        if student_layers < 1 or teacher_layers < 1:
            raise LayerMapError(
                f"layer_map: student_layers={student_layers} and teacher_layers={teacher_layers} must both be >= 1"
            )
        self.student_layers = student_layers
        self.teacher_layers = teacher_layers
        self.kind = kind
        if isinstance(kind, str):
            if kind == "uniform":
                targets = [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]
            elif kind == "last":
                if student_layers > teacher_layers:
                    raise LayerMapError(
                        f"layer_map: 'last' needs student_layers ({student_layers}) <= teacher_layers "
                        f"({teacher_layers}); use 'uniform' or an explicit list"
                    )
                targets = [teacher_layers - student_layers + m for m in range(1, student_layers + 1)]
            else:
                raise LayerMapError(f"layer_map: unknown kind '{kind}'; use 'uniform', 'last' or a list of teacher layers")
        else:
            targets = [int(t) for t in kind]
            if len(targets) != student_layers:
                raise LayerMapError(
                    f"layer_map: the list has {len(targets)} entries but the student has {student_layers} layers; "
                    f"give one teacher layer per student layer, G(1)..G({student_layers})"
                )
        for m, t in enumerate(targets, start=1):
            if not 1 <= t <= teacher_layers:
                raise LayerMapError(
                    f"layer_map: G({m}) = {t} is out of range; teacher layers are 1..{teacher_layers} "
                    "(0, the embeddings, is mapped to 0 automatically)"
                )
        self.targets = tuple(targets)

    def for_depth(self, teacher_layers: int) -> LayerMap:
        """The same kind of map onto a model of another depth (a source model that is not the teacher); an explicit
        list belongs to one depth and cannot follow."""
        if teacher_layers == self.teacher_layers:
            return self
        if not isinstance(self.kind, str):
            raise LayerMapError(f"layer_map: the list {list(self.targets)} names teacher layers of a {self.teacher_layers}-layer "
                                f"model, not of a {teacher_layers}-layer one")
        return LayerMap(self.kind, self.student_layers, teacher_layers)

    def __call__(self, m: int) -> int:
        return 0 if m == 0 else self.targets[m - 1]

    def hidden_pairs(self) -> list[tuple[int, int]]:
        """(student, teacher) indices into ``hidden_states``, layers 1..L_S (embeddings excluded)."""
        return [(m, t) for m, t in enumerate(self.targets, start=1)]

    def attention_pairs(self) -> list[tuple[int, int]]:
        """(student, teacher) indices into ``attention_scores`` (0-based: layer m is index m-1)."""
        return [(m - 1, t - 1) for m, t in enumerate(self.targets, start=1)]

    def __repr__(self) -> str:
        return f"LayerMap({self.student_layers}->{self.teacher_layers}: {list(self.targets)})"
