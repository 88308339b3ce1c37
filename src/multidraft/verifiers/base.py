"""Tree-level verification: the shape every verifier shares.

A **verifier** sees the whole drafted tree at once: the tree, the target law
``p`` [N, V] at every node, the draft law ``q`` [n_internal, V] at the nodes
that drew drafts, and the scheme whose draft law drew them.  It returns the
accepted path and one more token (:class:`Walk`).  It is
**lossless** iff, over the draft law and its own randomness, the emitted
sequence has the target's sequence law; the tests check that by enumerating
every tree and every verification outcome on tiny context-dependent tables.

A verifier also gives the **exact** expected number of emitted tokens
(accepted drafts + 1) for one drafted tree, the Rao-Blackwellised per-step
estimate of block efficiency: averaging it over steps has the same mean as
the observed tokens per step and less variance.

The accessors used here (``size``, ``tokens``, ``parents``, ``depths``,
``n_internal``, ``has_drafts``, ``drafts_of``, ``children_of``) are those that
stay valid for trees whose nodes draw different numbers of drafts, including
none at intermediate depths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from multidraft.schemes.base import Scheme
from multidraft.tree import Tree


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


class Outcome(NamedTuple):
    """One way a verification ends: the path root..``node`` is accepted with ``probability``,
    and the last emitted token is drawn from ``weights`` [V] (unnormalised)."""

    node: int
    probability: float
    weights: torch.Tensor


class Verifier:
    """A tree-level verification rule.

    Subclasses implement :meth:`verify` (a sample) and :meth:`outcomes` (its
    exact law), and :meth:`refusal` for the draft laws they cannot verify
    losslessly; ``reference`` names the paper and result they follow.
    """

    name: str = ""
    reference: str = ""

    def refusal(self, k: int, law: str) -> str | None:
        """Why a node drawing ``k`` drafts from draft law ``law`` cannot be verified, or None if it can."""
        return None

    def check(self, shape, scheme: Scheme) -> None:
        """``ValueError`` (naming verifier, scheme, draft law and tree) unless every node of ``shape`` fits.

        ``shape`` is what :func:`multidraft.tree.parse_shape` returns (:func:`branching`); a shape whose
        branching cannot be read is checked as if some node drew several drafts.
        """
        for where, k in branching(shape):
            reason = self.refusal(k, scheme.draft_law)
            if reason is not None:
                raise ValueError(
                    f"verifier {self.name!r} cannot verify scheme {scheme.name!r} (draft law {scheme.draft_law!r}, "
                    f"{k} draft(s) per node {where}) on tree {shape_name(shape)}: {reason}"
                )

    def check_tree(self, tree: Tree, scheme: Scheme) -> None:
        """The same check on a built tree, node by node (trees whose nodes differ in branching)."""
        for node in range(tree.size):
            if tree.has_drafts(node):
                k = int(tree.drafts_of(node).numel())
                reason = self.refusal(k, scheme.draft_law)
                if reason is not None:
                    raise ValueError(
                        f"verifier {self.name!r} cannot verify scheme {scheme.name!r} (draft law "
                        f"{scheme.draft_law!r}) at node {node}, which drew {k} draft(s): {reason}"
                    )

    def verify(
        self, tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor, generator: torch.Generator | None
    ) -> Walk:
        """One verification: ``p`` [N, V] the target's law at every node, ``q`` [n_internal, V] the
        draft's law at the nodes with drafts (row = node id)."""
        raise NotImplementedError

    def outcomes(self, tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor) -> list[Outcome]:
        """The exact law of :meth:`verify` given the drafted tree: probabilities summing to 1."""
        raise NotImplementedError

    def expected_tokens(self, tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor) -> float:
        """E[accepted + 1] given the drafted tree, exactly: sum over outcomes of P (depth + 1)."""
        depths = tree.depths.tolist()
        return float(sum(o.probability * (depths[o.node] + 1) for o in self.outcomes(tree, scheme, p, q)))


def shape_name(shape) -> str:
    """A readable spelling of a tree shape."""
    factors = per_depth(shape)
    if factors is None:
        return str(getattr(shape, "spelling", shape))
    if factors and len(set(factors)) == 1:
        return f"{factors[0]}x{len(factors)}"
    return ",".join(str(k) for k in factors)


def per_depth(shape) -> list[int] | None:
    """The per-depth branching of a shape given as a sequence of ints, else None."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        return None
    try:
        return [int(k) for k in shape]
    except (TypeError, ValueError):
        return None


def branching(shape) -> list[tuple[str, int]]:
    """(where, drafts per node) for a shape: per depth for a sequence of ints, per node for a
    template with per-node ``counts`` (nodes with no drafts skipped), else one unreadable entry."""
    factors = per_depth(shape)
    if factors is not None:
        return [(f"at depth {depth}", k) for depth, k in enumerate(factors, start=1)]
    counts = per_depth(getattr(shape, "counts", None))
    if counts is not None:
        return [(f"at template node {node}", k) for node, k in enumerate(counts) if k > 0]
    return [("(branching unreadable)", 2)]


def outcome_walk(tree: Tree, node: int, token: int) -> Walk:
    """The :class:`Walk` that accepts root..``node`` and emits ``token`` last.

    ``visited``: the root and the path nodes with drafts, whose draft laws entered the verification
    (as for the token walk, so a recorded trace keeps one draft row per verified position).
    """
    parents, tokens = tree.parents.tolist(), tree.tokens.tolist()
    path = []
    while node > 0:
        path.append(node)
        node = parents[node]
    path.reverse()
    visited = [v for v in [0, *path] if tree.has_drafts(v)]
    return Walk(path, [tokens[v] for v in path] + [token], visited)
