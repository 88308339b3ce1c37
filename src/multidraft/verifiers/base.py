"""Tree-level verification: the shape every verifier shares.

A **verifier** sees the whole drafted tree at once: the tree, the target law
``p`` [N, V] at every node, the draft law ``q`` [n_internal, V] at the nodes
that drew drafts, and the scheme whose draft law drew them.  It returns the
accepted path and one more token (:class:`multidraft.tree.Walk`).  It is
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

import torch

from multidraft.schemes.base import Scheme
from multidraft.tree import Tree, Walk


class Verifier:
    """A tree-level verification rule; subclasses implement :meth:`verify` and :meth:`expected_tokens`."""

    name: str = ""

    def check(self, shape, scheme: Scheme) -> None:
        """``ValueError`` (naming verifier, scheme and tree) unless this verifier is lossless for them."""

    def verify(
        self, tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor, generator: torch.Generator | None
    ) -> Walk:
        raise NotImplementedError

    def expected_tokens(self, tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor) -> float:
        raise NotImplementedError


def shape_name(shape) -> str:
    """A readable spelling of a tree shape (a per-depth sequence, or anything else by ``str``)."""
    try:
        factors = [int(k) for k in shape]
    except (TypeError, ValueError):
        return str(shape)
    if factors and len(set(factors)) == 1:
        return f"{factors[0]}x{len(factors)}"
    return ",".join(str(k) for k in factors)


def per_depth(shape) -> list[int] | None:
    """The per-depth branching of a uniform shape, or None if ``shape`` is not a sequence of ints."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        factors = getattr(shape, "factors", None)
        return per_depth(factors) if factors is not None and factors is not shape else None
    try:
        return [int(k) for k in shape]
    except (TypeError, ValueError):
        return None


def is_chain_shape(shape) -> bool:
    """Whether every node of a tree of this shape draws at most one draft (``ValueError`` if unreadable)."""
    factors = per_depth(shape)
    if factors is None:
        raise ValueError(f"cannot read the branching of tree shape {shape!r}")
    return all(k <= 1 for k in factors)


def is_chain(tree: Tree) -> bool:
    """Whether every node of the built tree drew at most one draft."""
    return all(tree.drafts_of(node).numel() <= 1 for node in range(tree.size) if tree.has_drafts(node))


def path_tokens(tree: Tree, path: list[int], last: int) -> list[int]:
    """The emitted tokens: those of the accepted ``path`` nodes, then ``last``."""
    tokens = tree.tokens.tolist()
    return [tokens[node] for node in path] + [int(last)]
