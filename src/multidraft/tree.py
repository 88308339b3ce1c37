"""Token trees: shapes, growth from the draft law, attention masks, and the verification walk (DESIGN §2).

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

**Walk.**  Starting at the root, draw ``y ~ pi(. | x_node; p_node, q_node)``
(``scheme.verify``).  If y is one of the node's drafts, move to that child and
repeat; otherwise emit y and stop.  At a leaf there are no drafts: emit a bonus
token y ~ p_leaf.  Every emitted token is distributed as p at its node because
each kernel is lossless: sum_x Q(x) pi(y | x) = p(y); by the chain rule the
emitted sequence has exactly the target's sequence law.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from multidraft.schemes.base import Scheme, sample_categorical

#: A parsed tree shape: the number of drafts per node at depths 1..D.
TreeShape = tuple[int, ...]

_REPEAT = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def parse_shape(spec: str | Sequence[int]) -> TreeShape:
    """A tree shape from ``"KxD"`` (k drafts per node for D levels), ``"k1,k2,.."`` or a sequence of ints.

    >>> parse_shape("2x3"), parse_shape("3,2,1"), parse_shape([2, 2])
    ((2, 2, 2), (3, 2, 1), (2, 2))
    """
    if isinstance(spec, str):
        match = _REPEAT.match(spec)
        if match:
            factors = (int(match.group(1)),) * int(match.group(2))
            if not factors:
                raise ValueError(f"tree shape {spec!r} has depth 0; the depth must be at least 1")
        else:
            parts = [part.strip() for part in spec.split(",")]
            if not all(part.isdigit() for part in parts):
                raise ValueError(
                    f"cannot parse tree shape {spec!r}; write 'KxD' (e.g. '2x4') or a list of "
                    "branching factors per depth (e.g. '2,2,1,1')"
                )
            factors = tuple(int(part) for part in parts)
    else:
        factors = tuple(spec)
        if not all(isinstance(f, int) and not isinstance(f, bool) for f in factors):
            raise ValueError(f"tree shape entries must be integers, got {list(spec)!r}")
    if not factors:
        raise ValueError("a tree shape needs at least one level")
    if min(factors) < 1:
        raise ValueError(f"every branching factor must be at least 1, got {factors}")
    return factors


def format_shape(shape: TreeShape) -> str:
    """The canonical spelling: ``"KxD"`` for a uniform shape, else ``"k1,k2,.."``."""
    if len(set(shape)) == 1:
        return f"{shape[0]}x{len(shape)}"
    return ",".join(str(k) for k in shape)


def check_shape(shape: TreeShape, scheme: Scheme) -> None:
    """``ValueError`` unless ``scheme`` accepts the branching factor at every depth."""
    for depth, k in enumerate(shape, start=1):
        try:
            scheme.check_k(k)
        except ValueError as error:
            raise ValueError(f"tree shape {format_shape(shape)} does not fit at depth {depth}: {error}") from None


@dataclass
class Tree:
    """A token tree grown level by level (breadth-first node ids, root = node 0).

    ``drafts[d]`` [n_d, k_{d+1}] are the ordered draft tuples of the n_d nodes at
    depth d, and ``child[d]`` [n_d, k_{d+1}] the node id each draft became
    (repeated drafts share a child).
    """

    tokens: torch.Tensor  # [N] int64
    parents: torch.Tensor  # [N] int64, -1 at the root
    depths: torch.Tensor  # [N] int64
    ancestors: torch.Tensor  # [N, N] bool, ancestors[i, j]: j lies on the path root..i
    level_starts: list[int] = field(default_factory=lambda: [0, 1])  # level d = ids level_starts[d]..[d+1]-1
    drafts: list[torch.Tensor] = field(default_factory=list)  # per internal level: [n_d, k] int64
    child: list[torch.Tensor] = field(default_factory=list)  # per internal level: [n_d, k] int64

    @classmethod
    def from_root(cls, token: int | torch.Tensor, device: torch.device | str | None = None) -> Tree:
        """A one-node tree holding the root token."""
        root = torch.as_tensor(token, dtype=torch.int64, device=device).reshape(1)
        zero = torch.zeros(1, dtype=torch.int64, device=root.device)
        return cls(root, zero - 1, zero, torch.ones(1, 1, dtype=torch.bool, device=root.device))

    @property
    def size(self) -> int:
        return self.tokens.shape[0]

    @property
    def depth(self) -> int:
        return len(self.level_starts) - 2

    @property
    def n_internal(self) -> int:
        """Nodes with children: ids 0..n_internal - 1."""
        return self.level_starts[-2]

    def level(self, depth: int) -> slice:
        """The node ids at ``depth``."""
        return slice(self.level_starts[depth], self.level_starts[depth + 1])

    def grow(self, drafts: torch.Tensor) -> slice:
        """Give every node of the deepest level the children drawn in ``drafts`` [n_D, k]; returns the new level.

        Row r holds the ordered drafts of the r-th node of the deepest level.
        A draft equal to an earlier one in its row is merged into that child.
        """
        start, end = self.level_starts[-2], self.level_starts[-1]
        if drafts.dim() != 2 or drafts.shape[0] != end - start:
            raise ValueError(f"drafts must be [{end - start}, k] for the deepest level, got {tuple(drafts.shape)}")
        drafts = drafts.to(self.tokens.device)
        n, k = drafts.shape
        same = drafts.unsqueeze(-1) == drafts.unsqueeze(-2)  # [n, k, k]
        first = same.long().argmax(-1)  # [n, k] index of the first equal draft in the row
        new = first == torch.arange(k, device=drafts.device)  # [n, k] a draft's first occurrence
        new_ids = end + torch.cumsum(new.flatten(), 0).reshape(n, k) - 1  # [n, k] valid where new
        child = new_ids.gather(1, first)  # [n, k]
        parents = (start + torch.arange(n, device=drafts.device)).unsqueeze(1).expand(n, k)[new]  # [m]
        m = parents.shape[0]
        ancestors = torch.nn.functional.pad(self.ancestors, (0, m))  # [N, N + m]
        rows = ancestors[parents]  # [m, N + m]
        rows[torch.arange(m, device=rows.device), end + torch.arange(m, device=rows.device)] = True
        self.tokens = torch.cat([self.tokens, drafts[new]])
        self.parents = torch.cat([self.parents, parents])
        self.depths = torch.cat([self.depths, self.depths[parents] + 1])
        self.ancestors = torch.cat([ancestors, rows])
        self.drafts.append(drafts)
        self.child.append(child)
        self.level_starts.append(end + m)
        return slice(end, end + m)

    def has_drafts(self, node: int) -> bool:
        """Whether verification runs at ``node`` (it was given drafts)."""
        return node < self.n_internal

    def drafts_of(self, node: int) -> torch.Tensor:
        """The ordered draft tuple [k] drawn at ``node`` (a node with drafts)."""
        depth = int(self.depths[node])
        return self.drafts[depth][node - self.level_starts[depth]]

    def children_of(self, node: int) -> torch.Tensor:
        """The child node id [k] each draft of ``node`` became (repeated drafts share a child)."""
        depth = int(self.depths[node])
        return self.child[depth][node - self.level_starts[depth]]

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


@dataclass
class Walk:
    """The outcome of one verification walk.

    ``path`` are the accepted node ids (depth 1, 2, ..); ``tokens`` the
    emitted tokens: the path's tokens, then the residual or bonus token.
    ``visited`` are the node ids where verification ran (the root, then the
    path nodes with children), so ``len(visited) == len(path) + 1`` unless the
    walk ended at a leaf.
    """

    path: list[int]
    tokens: list[int]
    visited: list[int]

    @property
    def accepted(self) -> int:
        return len(self.path)


def walk(tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor, generator: torch.Generator | None) -> Walk:
    """Verify the tree from the root (see module docstring).

    ``p`` [N, V]: the target's law at every node; ``q`` [n_internal, V]: the
    draft's law at every internal node (both processed identically).
    """
    node, path, visited = 0, [], []
    tokens = tree.tokens.tolist()
    while tree.has_drafts(node):
        visited.append(node)
        drafts = tree.drafts_of(node)  # [k]
        token, accepted = scheme.verify(p[node], q[node], drafts, generator)
        if not bool(accepted):
            return Walk(path, [tokens[i] for i in path] + [int(token)], visited)
        node = int(tree.children_of(node)[drafts == token][0])
        path.append(node)
    bonus = int(sample_categorical(p[node], generator))
    return Walk(path, [tokens[i] for i in path] + [bonus], visited)
