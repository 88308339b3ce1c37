"""Traversal verification with a node's two drafts verified in decreasing p/q order (``traversal-ratio``).

The traversal claim (:mod:`~multidraft.verifiers.traversal`) holds for *any* sequential description of a
node's draft set: the drafts may be verified in any order, provided the j-th one verified is, given
those before it, distributed as the q_j the verifier uses, and the order is fixed by the node's context
(p, q), not by the draws.  Draft order is one such description.  Here, at every node with two drafts
from the ``iid`` or ``wor`` law, the draft with the larger p/q (the one the target wants more, relative
to how often the draft proposes it) is verified first:

* rank the tokens by r = p/q ascending (q = 0 last, ties by token id); L_b = the tokens ranked below b;
* ``wor``: the set {a, b} has probability q_a q_b (1/(1 - q_a) + 1/(1 - q_b)), so the first-verified
  (higher-ranked) draft has law

      q_1(b) = q_b sum_{a in L_b} q_a / (1 - q_a) + q_b / (1 - q_b) sum_{a in L_b} q_a,

  and given it is b, the other has law q_2(a | b) = q_b (q_a / (1 - q_a) + q_a / (1 - q_b)) / q_1(b) on L_b;
* ``iid``: {a, b} (a != b) has probability 2 q_a q_b and {b, b} probability q_b^2, so
  q_1(b) = q_b^2 + 2 q_b q(L_b), and q_2(a | b) = 2 q_a q_b / q_1(b) on L_b, q_2(b | b) = q_b^2 / q_1(b) (a
  repeated draft, verified as a leaf of its own as in traversal).

(1 - q_a is the sum of the other entries, without cancellation.)  Both sum to 1 and factor the draft
set's law, so the traversal's proof applies unchanged: ``traversal-ratio`` is lossless for every tree
whose nodes draw from these laws, and elsewhere (one draft, more than two, the other laws, a ``wor``
node whose q has fewer than two tokens) it verifies in draft order as ``traversal-seq`` does.

Why: a sequential (recursive rejection) coupling of two drafts falls short of alpha*, the best
acceptance of any lossless rule for the node (the depth-1 case of the optimal tree verifier,
:mod:`multidraft.theory.tree_lp`).  Offering the target first the draft it is least likely to reject,
and the other against the residual, closes most of that gap on the bundled pair's recorded
distributions (``benchmarks/bench_frontier_node.py``, results in benchmarks/results/frontier_node.md).

Cost: one sort of the vocabulary and a few passes over it per node with two drafts (the exact law and
the sampler alike), in float64.
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


def ratio_rank(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The rank [V] of every token by r = p/q ascending (q = 0 last, ties by token id): L_b = {rank < rank[b]}."""
    ratio = torch.where(q > 0, p / torch.where(q > 0, q, 1), torch.inf)
    order = torch.sort(ratio, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank


def first_law(law: str, q: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """q_1 [V] (module docstring), q float64 summing to 1."""
    order = torch.argsort(rank)
    inside = torch.cumsum(q[order], 0) - q[order]  # q(L_b) in rank order
    if law == "iid":
        first = q[order] ** 2 + 2 * q[order] * inside
    else:
        others = one_minus(q)[order]  # 1 - q_b
        odds = torch.cumsum(q[order] / others, 0) - q[order] / others  # sum_{a in L_b} q_a / (1 - q_a)
        first = q[order] * odds + q[order] / others * inside
    out = torch.empty_like(q)
    out[order] = first
    return out


def second_law(law: str, q: torch.Tensor, rank: torch.Tensor, first: torch.Tensor, b: int) -> torch.Tensor:
    """q_2(. | b) [V] (module docstring)."""
    lower = rank < rank[b]
    if law == "iid":
        out = torch.where(lower, 2 * q * q[b], 0.0)
        out[b] = q[b] ** 2
    else:
        others = one_minus(q)
        out = torch.where(lower, q[b] * (q / others + q / others[b]), 0.0)
    return out / first[b]


def one_minus(q: torch.Tensor) -> torch.Tensor:
    """1 - q_a for every a as the sum of the other entries: total - q_a, except for an entry above 1/2."""
    total = q.sum()
    out = total - q
    heavy = int(torch.argmax(q))
    if q[heavy] > 0.5 * total:
        out[heavy] = q.sum() - q[heavy] if q.numel() == 1 else torch.cat([q[:heavy], q[heavy + 1 :]]).sum()
    return out


class RatioTraversal(Traversal):
    """Traversal verification, two ``iid`` / ``wor`` drafts verified in decreasing p/q order (module docstring)."""

    def children(self, tree: Tree, law: str, p: torch.Tensor, q: torch.Tensor, node: int):
        drafts = tree.drafts_of(node)
        if law not in ORDERED_LAWS or drafts.numel() != 2 or (law == "wor" and int((q > 0).sum()) < 2):
            yield from children(tree, law, q, node)
            return
        p64, q64 = p.double() / p.double().sum(), q.double() / q.double().sum()
        rank = ratio_rank(p64, q64)
        tokens, kids = drafts.tolist(), tree.children_of(node).tolist()
        high = 0 if rank[tokens[0]] >= rank[tokens[1]] else 1  # the draft verified first
        first = first_law(law, q64, rank)
        b = tokens[high]
        yield b, kids[high], Dense(first), False
        yield tokens[1 - high], kids[1 - high], Dense(second_law(law, q64, rank, first, b)), kids[1] == kids[0]


VERIFIER = RatioTraversal(
    "traversal-ratio",
    SEQUENTIAL_LAWS,
    SEQUENTIAL_LAWS,
    "traversal with two iid/wor drafts in decreasing p/q order, proved in multidraft.verifiers.ordered",
)
