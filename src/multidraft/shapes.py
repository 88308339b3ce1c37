"""Tree shapes: how many drafts each node of a step's tree draws (docs/design.md §2).

A shape is given per depth, ``(k_1, .., k_D)`` ("2x3", "3,2,1": every node at
depth d - 1 draws k_d drafts), or per node as a :class:`TreeTemplate`
("3/2,1,0/1,1": likely branches may get more children).  Every function here
takes either; the rest of the package asks them instead of telling the two
apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from multidraft.schemes.base import Scheme

_REPEAT = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


@dataclass(frozen=True)
class TreeTemplate:
    """A draft tree given per node (Sequoia / EAGLE-2 style): likely branches may get more children.

    ``levels[d][j]`` is the number of drafts of the j-th template node at depth
    d.  The nodes of depth d + 1 are the children of the depth-d nodes, in
    parent order then draft order, so ``len(levels[d + 1]) == sum(levels[d])``;
    nodes past the last level are leaves.  Template node ids run breadth first
    (root 0).  Written ``"3/2,1,0/1,1"`` (levels separated by ``/``) or as
    nested lists ``[[3], [2, 1, 0], [1, 1]]``.

    When repeated i.i.d. drafts merge into one child, that child follows the
    template of the draft's first occurrence; the subtrees of the repeats are
    not drafted.  What lies below a node is chosen from the draft alone, so
    every such rule keeps the walk lossless.
    """

    levels: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if not self.levels or len(self.levels[0]) != 1 or self.levels[0][0] < 1:
            raise ValueError(f"a tree template starts with one root with at least one draft, got {self.spelling}")
        for depth, (above, level) in enumerate(zip(self.levels, self.levels[1:]), start=1):
            if len(level) != sum(above):
                raise ValueError(
                    f"tree template {self.spelling}: level {depth} lists {len(level)} nodes, "
                    f"but level {depth - 1} gives {sum(above)} drafts"
                )
        if any(k < 0 for level in self.levels for k in level):
            raise ValueError(f"tree template {self.spelling}: draft counts must be >= 0")
        if sum(self.levels[-1]) == 0:
            raise ValueError(f"tree template {self.spelling}: the last level gives no drafts; drop it")

    @property
    def spelling(self) -> str:
        return "/".join(",".join(str(k) for k in level) for level in self.levels)

    @property
    def counts(self) -> tuple[int, ...]:
        """Drafts per template node id (breadth first)."""
        return tuple(k for level in self.levels for k in level)

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def size(self) -> int:
        """Template nodes, root included (the most nodes a step drafts)."""
        return 1 + sum(self.counts)

    def drafts(self, node: int) -> int:
        """Drafts of template node ``node`` (0 past the last level)."""
        counts = self.counts
        return counts[node] if node < len(counts) else 0

    def child(self, node: int, index: int) -> int:
        """Template id of draft ``index`` of template node ``node``."""
        return 1 + sum(self.counts[:node]) + index


#: A parsed tree shape: drafts per node at depths 1..D (uniform), or a per-node template.
TreeShape = tuple[int, ...] | TreeTemplate


def _parse_template(levels) -> TreeTemplate:
    if not all(isinstance(k, int) and not isinstance(k, bool) for level in levels for k in level):
        raise ValueError(f"tree template entries must be integers, got {levels!r}")
    return TreeTemplate(tuple(tuple(level) for level in levels))


def parse_shape(spec: str | Sequence[int] | Sequence[Sequence[int]] | TreeTemplate) -> TreeShape:
    """A tree shape from ``"KxD"`` (k drafts per node for D levels), ``"k1,k2,.."``, a sequence of ints,
    or a per-node template ``"3/2,1,0/1,1"`` / ``[[3], [2, 1, 0], [1, 1]]`` (:class:`TreeTemplate`).

    >>> parse_shape("2x3"), parse_shape("3,2,1"), parse_shape([2, 2])
    ((2, 2, 2), (3, 2, 1), (2, 2))
    """
    if isinstance(spec, TreeTemplate):
        return spec
    if isinstance(spec, str):
        match = _REPEAT.match(spec)
        if "/" in spec:
            parts = [[part.strip() for part in level.split(",")] for level in spec.split("/")]
            if not all(part.isdigit() for level in parts for part in level):
                raise ValueError(f"cannot parse tree template {spec!r}; write e.g. '3/2,1,0/1,1'")
            return _parse_template([[int(part) for part in level] for level in parts])
        if match:
            factors = (int(match.group(1)),) * int(match.group(2))
            if not factors:
                raise ValueError(f"tree shape {spec!r} has depth 0; the depth must be at least 1")
        else:
            parts = [part.strip() for part in spec.split(",")]
            if not all(part.isdigit() for part in parts):
                raise ValueError(
                    f"cannot parse tree shape {spec!r}; write 'KxD' (e.g. '2x4'), a list of "
                    "branching factors per depth (e.g. '2,2,1,1') or a template per node (e.g. '3/2,1,0/1,1')"
                )
            factors = tuple(int(part) for part in parts)
    else:
        if spec and all(isinstance(level, (list, tuple)) for level in spec):
            return _parse_template(spec)
        factors = tuple(spec)
        if not all(isinstance(f, int) and not isinstance(f, bool) for f in factors):
            raise ValueError(f"tree shape entries must be integers, got {list(spec)!r}")
    if not factors:
        raise ValueError("a tree shape needs at least one level")
    if min(factors) < 1:
        raise ValueError(f"every branching factor must be at least 1, got {factors}")
    return factors


def format_shape(shape: TreeShape) -> str:
    """The canonical spelling: ``"KxD"`` for a uniform shape, ``"k1,k2,.."``, or a template's ``"3/2,1/1"``."""
    if isinstance(shape, TreeTemplate):
        return shape.spelling
    if len(set(shape)) == 1:
        return f"{shape[0]}x{len(shape)}"
    return ",".join(str(k) for k in shape)


def shape_depth(shape: TreeShape) -> int:
    """The most levels below the root."""
    return shape.depth if isinstance(shape, TreeTemplate) else len(shape)


def shape_prefix(shape: TreeShape, depth: int) -> TreeShape:
    """The shape's first ``depth`` >= 1 levels (a template's prefix is a template: every level above its
    last one gives drafts)."""
    if isinstance(shape, TreeTemplate):
        return TreeTemplate(shape.levels[:depth])
    return tuple(shape[:depth])


def draft_counts(shape: TreeShape) -> set[int]:
    """The numbers of drafts the shape's nodes draw (0 left out)."""
    return {k for k in (shape.counts if isinstance(shape, TreeTemplate) else shape) if k > 0}


def widest(shape: TreeShape) -> int:
    """The most drafts any node of the shape draws."""
    return max(shape.counts) if isinstance(shape, TreeTemplate) else max(shape)


def level_capacity(shape: TreeShape, vocab: int) -> list[int]:
    """The most nodes at depths 0..D (the root alone at depth 0); a node with k drafts has <= min(k, V) children."""
    if isinstance(shape, TreeTemplate):
        return [1] + [sum(min(k, vocab) for k in level) for level in shape.levels]
    widths = [1]
    for k in shape:
        widths.append(widths[-1] * min(k, vocab))
    return widths


def check_shape(shape: TreeShape, scheme: Scheme) -> None:
    """``ValueError`` unless ``scheme`` accepts the number of drafts of every node."""
    levels = shape.levels if isinstance(shape, TreeTemplate) else [(k,) for k in shape]
    for depth, level in enumerate(levels, start=1):
        for k in sorted({k for k in level if k > 0}):
            try:
                scheme.check_k(k)
            except ValueError as error:
                raise ValueError(f"tree shape {format_shape(shape)} does not fit at depth {depth}: {error}") from None


def uniform_factors(shape: TreeShape) -> tuple[int, ...] | None:
    """The drafts per depth of a shape given per depth, None for a per-node template."""
    return None if isinstance(shape, TreeTemplate) else tuple(shape)


def template_of(shape: TreeShape) -> TreeTemplate:
    """A shape as a per-node template (expands a uniform shape: for shapes small enough to expand)."""
    if isinstance(shape, TreeTemplate):
        return shape
    levels, width = [], 1
    for k in shape:
        levels.append((k,) * width)
        width *= k
    return TreeTemplate(tuple(levels))


def branching(shape: TreeShape) -> list[tuple[str, int]]:
    """(where, drafts per node) for every depth of a uniform shape, or every template node with drafts."""
    factors = uniform_factors(shape)
    if factors is not None:
        return [(f"at depth {depth}", k) for depth, k in enumerate(factors, start=1)]
    return [(f"at template node {node}", k) for node, k in enumerate(shape.counts) if k > 0]
