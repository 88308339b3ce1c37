"""Traversal verification with a node's two drafts verified wanted-first (``traversal-ratio``).

The traversal claim (:mod:`~multidraft.verifiers.traversal`) holds for *any* sequential description of a
node's draft set: the drafts may be verified in any order, provided the j-th one verified is, given
those before it, distributed as the q_j the verifier uses, and the order is fixed by the node's context
(p, q), not by the draws.  Draft order is one such description.  Here, at every node with two drafts
from the ``iid`` or ``wor`` law, a draft the target wants at least as much as the draft proposes it
(p >= q: class A) is verified before one it wants less (p < q: class B); two drafts of one class keep
draft order.  With x_1, x_2 the drafts in draft order and B's mass q(B):

* ``wor`` (x_2 | x_1 ~ q off x_1; 1 - q_a is the sum of the other entries, without cancellation):

      q_1(c) = q_c (1 + sum_{a in B} q_a / (1 - q_a))     for c in A,
      q_1(c) = q_c (q(B) - q_c) / (1 - q_c)               for c in B;
      q_2(a | b) = [q_b q_a / (1 - q_b) + [a in B] q_a q_b / (1 - q_a)] / q_1(b),  a != b,   for b in A,
      q_2(a | b) = [a in B] q_b q_a / (1 - q_b) / q_1(b),  a != b,                             for b in B;

* ``iid`` ({b, b} is a repeated draft, verified as a leaf of its own as in traversal):

      q_1(c) = q_c (1 + q(B)) for c in A,   q_1(c) = q_c q(B) for c in B;
      q_2(a | b) = q_a (1 + [a in B]) / (1 + q(B)) for b in A,   q_2(a | b) = [a in B] q_a / q(B) for b in B.

(For b in A the first draft is b when x_1 = b, or when x_2 = b and x_1 is in B; for b in B only when
x_1 = b and x_2 is in B.)  Both factor the draft set's law (the tests check it), so the traversal's proof
applies unchanged: ``traversal-ratio`` is lossless for every tree whose nodes draw from these laws, and
elsewhere (one draft, more than two, the other laws, a ``wor`` node whose q has fewer than two tokens)
it verifies in draft order, as ``traversal-seq`` does.

Why: a sequential (recursive rejection) coupling of two drafts falls short of alpha*, the best
acceptance of any lossless rule for the node (the depth-1 case of the optimal tree verifier,
:mod:`multidraft.theory.tree_lp`).  Offering the target first the draft it is least likely to reject,
and the other against the residual, closes most of that gap on the bundled pair's recorded
distributions; ranking both drafts by p/q instead of by the class of p/q gains a little more at the
cost of a sort of the vocabulary (``benchmarks/bench_frontier_node.py``, results in
benchmarks/results/frontier_node.md).

Cost: a few passes over the vocabulary per node with two drafts, in float64 (no sort).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from multidraft.tree import Tree
from multidraft.verifiers.proposals import SEQUENTIAL_LAWS
from multidraft.verifiers.traversal import Traversal, children

#: Laws whose two drafts are reordered here.
ORDERED_LAWS = ("iid", "wor")


class Dense(NamedTuple):
    """A proposal q_j held as a vector (the interface of :class:`~multidraft.verifiers.proposals.Proposal`)."""

    law: torch.Tensor  # [V] float64, q_j
    point: int = -1  # never a point mass: the residual update materialises U

    def at(self, q: torch.Tensor, token: int) -> float:
        return float(self.law[token])

    def subtract_from(self, mass: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return mass.double() - self.law


def one_minus(q: torch.Tensor) -> torch.Tensor:
    """1 - q_a for every a as the sum of the other entries: total - q_a, except for an entry above 1/2."""
    total = q.sum()
    out = total - q
    heavy = int(torch.argmax(q))
    if q[heavy] > 0.5 * total:
        out[heavy] = torch.cat([q[:heavy], q[heavy + 1 :]]).sum()
    return out


def first_law(law: str, q: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """q_1 [V] (module docstring): q float64 summing to 1, ``wanted`` [V] bool the class A (p >= q)."""
    unwanted = ~wanted
    mass_b = q[unwanted].sum()
    if law == "iid":
        return torch.where(wanted, q * (1 + mass_b), q * mass_b)
    others = one_minus(q)
    odds_b = (q[unwanted] / others[unwanted]).sum()
    return torch.where(wanted, q * (1 + odds_b), q * (mass_b - q) / others)


def second_law(law: str, q: torch.Tensor, wanted: torch.Tensor, first: torch.Tensor, b: int) -> torch.Tensor:
    """q_2(. | b) [V] (module docstring)."""
    unwanted = (~wanted).double()
    if law == "iid":
        out = q * (1 + unwanted) * q[b] if wanted[b] else q * unwanted * q[b]
    else:
        others = one_minus(q)
        out = q[b] * q / others[b] + (unwanted * q[b] * q / others if wanted[b] else 0.0)
        if not wanted[b]:
            out = out * unwanted
        out[b] = 0.0
    return out / first[b]


class RatioTraversal(Traversal):
    """Traversal verification, two ``iid`` / ``wor`` drafts verified wanted-first (module docstring)."""

    def children(self, tree: Tree, law: str, p: torch.Tensor, q: torch.Tensor, node: int):
        drafts = tree.drafts_of(node)
        if law not in ORDERED_LAWS or drafts.numel() != 2 or (law == "wor" and int((q > 0).sum()) < 2):
            yield from children(tree, law, q, node)
            return
        p64, q64 = p.double() / p.double().sum(), q.double() / q.double().sum()
        wanted = p64 >= q64  # [V] class A
        tokens, kids = drafts.tolist(), tree.children_of(node).tolist()
        high = 1 if (not wanted[tokens[0]] and wanted[tokens[1]]) else 0  # the draft verified first
        first = first_law(law, q64, wanted)
        b = tokens[high]
        yield b, kids[high], Dense(first), False
        yield tokens[1 - high], kids[1 - high], Dense(second_law(law, q64, wanted, first, b)), kids[1] == kids[0]


VERIFIER = RatioTraversal(
    "traversal-ratio",
    SEQUENTIAL_LAWS,
    SEQUENTIAL_LAWS,
    "traversal with two iid/wor drafts verified wanted-first (p >= q), proved in multidraft.verifiers.ordered",
)
