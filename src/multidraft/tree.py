"""Token trees: shapes, growth from the draft law, attention masks and positions (DESIGN §2).

A tree of depth D is grown from a **root**, the last committed token.  A tree
shape ``(k_1, .., k_D)`` gives the number of drafts per node at each depth: a
node at depth d - 1 asks the scheme's draft law for k_d drafts
``x = (x_1..x_{k_d}) ~ Q(q_node)``.  Drafts that coincide (i.i.d. laws may
repeat a token) become **one** child; the node keeps the ordered tuple ``x``
because the verification kernel pi(y | x; p, q) depends on it.

Nodes are numbered breadth first, the root is node 0; so every level is a
contiguous range of node ids and the nodes with children (the *internal*
nodes, depths 0..D-1) are exactly the ids ``0..n_internal - 1``.

**Mask and positions.**  All nodes are scored in one forward pass: node i sits
at position ``root_position + depth(i)`` and attends to the committed prefix
and to its ancestors (itself included): ``ancestors[i, j]`` is True iff j is
on the path from the root to i.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

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


class _Uniform:
    """The template of a uniform shape: every node at depth d is template node d."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def drafts(self, node: int) -> int:
        return self.shape[node] if node < len(self.shape) else 0

    def child(self, node: int, index: int) -> int:
        return node + 1


@dataclass
class Tree:
    """A token tree grown level by level (breadth-first node ids, root = node 0).

    Each node with drafts keeps its ordered draft tuple and the child node id
    each draft became (repeated drafts share a child): :meth:`drafts_of`,
    :meth:`children_of`.  A tree built with a shape also knows, per node, its
    template node, hence how many drafts each node of the deepest level gets
    (:meth:`pending`).
    """

    tokens: torch.Tensor  # [N] int64
    parents: torch.Tensor  # [N] int64, -1 at the root
    depths: torch.Tensor  # [N] int64
    ancestors: torch.Tensor  # [N, N] bool, ancestors[i, j]: j lies on the path root..i
    level_starts: list[int] = field(default_factory=lambda: [0, 1])  # level d = ids level_starts[d]..[d+1]-1
    template: object = None  # TreeTemplate or _Uniform, when built from a shape
    template_ids: list[int] = field(default_factory=lambda: [0])  # [N] template node of each node
    node_drafts: dict[int, torch.Tensor] = field(default_factory=dict)  # node -> [k] int64
    node_children: dict[int, torch.Tensor] = field(default_factory=dict)  # node -> [k] int64

    @classmethod
    def from_root(
        cls, token: int | torch.Tensor, device: torch.device | str | None = None, shape: TreeShape | None = None
    ) -> Tree:
        """A one-node tree holding the root token, to be grown by ``shape`` (optional)."""
        root = torch.as_tensor(token, dtype=torch.int64, device=device).reshape(1)
        zero = torch.zeros(1, dtype=torch.int64, device=root.device)
        template = None if shape is None else shape if isinstance(shape, TreeTemplate) else _Uniform(tuple(shape))
        return cls(root, zero - 1, zero, torch.ones(1, 1, dtype=torch.bool, device=root.device), template=template)

    @property
    def size(self) -> int:
        return self.tokens.shape[0]

    @property
    def depth(self) -> int:
        return len(self.level_starts) - 2

    @property
    def n_internal(self) -> int:
        """Nodes above the deepest level (the draft read them; q is known there): ids 0..n_internal - 1."""
        return self.level_starts[-2]

    def level(self, depth: int) -> slice:
        """The node ids at ``depth``."""
        return slice(self.level_starts[depth], self.level_starts[depth + 1])

    def pending(self) -> list[tuple[int, list[int]]]:
        """The deepest level's nodes that the shape gives drafts, grouped as (k, node ids), k ascending."""
        groups: dict[int, list[int]] = {}
        for node in range(self.level_starts[-2], self.level_starts[-1]):
            k = self.template.drafts(self.template_ids[node])
            if k > 0:
                groups.setdefault(k, []).append(node)
        return sorted(groups.items())

    def grow(self, drafts: torch.Tensor) -> slice:
        """Give every node of the deepest level the children drawn in ``drafts`` [n_D, k]; returns the new level."""
        start, end = self.level_starts[-2], self.level_starts[-1]
        if drafts.dim() != 2 or drafts.shape[0] != end - start:
            raise ValueError(f"drafts must be [{end - start}, k] for the deepest level, got {tuple(drafts.shape)}")
        return self.grow_groups([(list(range(start, end)), drafts)])

    def grow_groups(self, groups: Sequence[tuple[Sequence[int], torch.Tensor]]) -> slice:
        """Give nodes of the deepest level their drafts: ``groups`` of (node ids [m], drafts [m, k]).

        A draft equal to an earlier one of its node is merged into that child.
        New nodes are numbered in parent order, then draft order; returns them.
        """
        start, end = self.level_starts[-2], self.level_starts[-1]
        device = self.tokens.device
        parts = []  # per group: node ids [m], drafts [m, k], first [m, k], new [m, k]
        for nodes, drafts in groups:
            nodes = torch.as_tensor(list(nodes), dtype=torch.int64, device=device)
            drafts = drafts.to(device)
            if drafts.dim() != 2 or drafts.shape[0] != nodes.shape[0] or nodes.numel() == 0:
                raise ValueError(f"drafts must be [{nodes.shape[0]}, k] for nodes {nodes.tolist()}, got {tuple(drafts.shape)}")
            if bool((nodes < start).any() | (nodes >= end).any()) or any(int(n) in self.node_drafts for n in nodes):
                raise ValueError(f"nodes {nodes.tolist()} are not undrafted nodes of the deepest level {start}..{end - 1}")
            k = drafts.shape[1]
            same = drafts.unsqueeze(-1) == drafts.unsqueeze(-2)  # [m, k, k]
            first = same.long().argmax(-1)  # [m, k] index of the first equal draft in the row
            new = first == torch.arange(k, device=device)  # [m, k] a draft's first occurrence
            parts.append((nodes, drafts, first, new))
        width = max(drafts.shape[1] for _, drafts, _, _ in parts)
        # Every new child, keyed by (parent, draft index) so that ids follow parent order then draft order.
        keys = torch.cat([(nodes.unsqueeze(1) * width + torch.arange(d.shape[1], device=device))[new]
                          for nodes, d, _, new in parts])  # [M]
        order = keys.argsort()
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=device))  # [M]
        parents = torch.cat([nodes.unsqueeze(1).expand_as(new)[new] for nodes, _, _, new in parts])[order]  # [M]
        tokens = torch.cat([d[new] for _, d, _, new in parts])[order]  # [M]
        index = torch.cat([torch.arange(d.shape[1], device=device).expand_as(new)[new] for _, d, _, new in parts])[order]
        offset = 0
        for nodes, drafts, first, new in parts:
            count = int(new.sum())
            ids = torch.zeros_like(first)
            ids[new] = end + rank[offset : offset + count]
            offset += count
            child = ids.gather(1, first)  # [m, k]
            for row, node in enumerate(nodes.tolist()):
                self.node_drafts[node], self.node_children[node] = drafts[row], child[row]
        m = parents.shape[0]
        ancestors = torch.nn.functional.pad(self.ancestors, (0, m))  # [N, N + m]
        rows = ancestors[parents]  # [m, N + m]
        rows[torch.arange(m, device=device), end + torch.arange(m, device=device)] = True
        if self.template is not None:
            self.template_ids += [self.template.child(self.template_ids[p], i)
                                  for p, i in zip(parents.tolist(), index.tolist())]
        self.tokens = torch.cat([self.tokens, tokens])
        self.parents = torch.cat([self.parents, parents])
        self.depths = torch.cat([self.depths, self.depths[parents] + 1])
        self.ancestors = torch.cat([ancestors, rows])
        self.level_starts.append(end + m)
        return slice(end, end + m)

    def truncated(self, depth: int) -> Tree:
        """The tree cut below ``depth``: nodes of depth <= ``depth``, those at ``depth`` becoming leaves.

        Node ids are kept (levels are contiguous), so p[:size] and q[:n_internal]
        of the full tree are the truncated tree's laws.  A tree drafted by a
        uniform shape ``KxD`` cut at depth d is distributed as one drafted by ``Kxd``.
        """
        if not 1 <= depth <= self.depth:
            raise ValueError(f"cannot cut a tree of depth {self.depth} at depth {depth}")
        size = self.level_starts[depth + 1]
        internal = self.level_starts[depth]
        return Tree(
            self.tokens[:size], self.parents[:size], self.depths[:size], self.ancestors[:size, :size],
            level_starts=self.level_starts[: depth + 2], template=None, template_ids=self.template_ids[:size],
            node_drafts={n: d for n, d in self.node_drafts.items() if n < internal},
            node_children={n: c for n, c in self.node_children.items() if n < internal},
        )

    def has_drafts(self, node: int) -> bool:
        """Whether verification runs at ``node`` (it was given drafts)."""
        return node in self.node_drafts

    def drafts_of(self, node: int) -> torch.Tensor:
        """The ordered draft tuple [k] drawn at ``node`` (a node with drafts)."""
        return self.node_drafts[node]

    def children_of(self, node: int) -> torch.Tensor:
        """The child node id [k] each draft of ``node`` became (repeated drafts share a child)."""
        return self.node_children[node]

    def visibility(self, nodes: slice, prefix: int) -> torch.Tensor:
        """Which keys the ``nodes`` see, as bool [len(nodes), prefix + nodes.stop].

        The key sequence is ``prefix`` committed entries (all visible) followed
        by tree nodes 0..nodes.stop - 1 in id order (visible iff an ancestor).
        """
        rows = self.ancestors[nodes, : nodes.stop]  # [n, nodes.stop]
        committed = rows.new_ones(rows.shape[0], prefix)  # [n, prefix]
        return torch.cat([committed, rows], dim=1)

    def positions(self, nodes: slice, root_position: int) -> torch.Tensor:
        """Position ids [len(nodes)]: the root's position plus the depth."""
        return root_position + self.depths[nodes]
