"""Greedy multi-path block verification (``gbv``), derived here for the trees multidraft drafts.

Thomas and Pal (arXiv 2602.16961) name this verifier; only their abstract was reachable here, so the
rule below is our own derivation from block verification (Sun et al., arXiv 2403.10444) and its proof
is given in full.  What the abstract fixes: the draft proposes several candidate paths; block
verification (BV) is the optimal verifier of one path; the multi-path verifiers of their class are
built from BV, and the *greedy* one verifies the paths one after the other, each taking as much as
it can of what the earlier ones left.

**The rule.**  List the root-to-leaf paths of the tree in depth-first order (children in draft
order).  Every node v keeps BV's state: a weight w_v and the unnormalised law U_v = w_v P_v of the
token emitted if the verification stops at v (P_v starts as p_v).  Path j is verified by BV's
backward pass from its leaf up to its *branch point*, the deepest node it shares with a path still
to come (the root for the last path):

* entering path j below its divergence from path j - 1 at node u, each new node c (drafted at its
  parent a as x with proposal q_i, the law of that draft given the earlier drafts of a,
  :mod:`~multidraft.verifiers.proposals`) starts with BV's weight w_c = min(1, U_a(x) / q_i(x)),
  U_c = w_c p_c;
* going back up from the leaf, node v stops the verification (the path root..v is emitted with
  y ~ U_v) with probability w_v; otherwise v is deleted and its parent a updates as BV does after
  rejecting a block at v:  U_a <- (U_a - q_i)^+ / R,  w_a <- S / R,  1 - w_a <- (1 - w_a) / R,
  S = sum (U_a - q_i)^+, R = S + 1 - w_a;
* the backward pass of path j stops below its branch point: that node is decided by a later path
  (every path through it has then been tried), and the root is decided last (w_root = 1).

On a chain this is exactly BV (weights p_i and stopping probabilities h_i of Algorithm 2: after the
deletion of n_{i+1}, w_{n_i} = S_i / R_i = h_i).  A repeated i.i.d. draft, merged into an earlier
child's node, is a path of its own of length one (a leaf with w from the current U_a and y ~ p).

**Lossless.**  Claim: for a node v in state (w, U = w P) whose remaining children are drawn
x_i | x_<i ~ q_i, each with an independent subtree drawn from the draft law, the paths through v
verified greedily emit, for every continuation y s,

    P(v not deleted, the tokens emitted from v on, continued by the target, are y s) = w P(y) T(s | y)

(T the target's law of the rest), hence P(v deleted) = 1 - w.  At a leaf this is BV's own test.
For the next child x_i ~ q_i: by the claim for it (induction on the height), it contributes
q_i(x) min(1, U(x) / q_i(x)) = min(U(x), q_i(x)) at y = x and is deleted with probability
sum_x (q_i - U)^+ = R; after the update the claim for v's new state contributes R (U - q_i)^+ / R,
and min(U, q_i) + (U - q_i)^+ = U.  At the root (w = 1) the emitted sequence has the target's law.
The proof uses only that each draft's law given the earlier ones is the q_i the verifier uses, and that
subtrees are drawn independently given their roots: every draft law of
:data:`~multidraft.verifiers.proposals.SEQUENTIAL_LAWS`, at any number of drafts per node.

**What it equals.**  The greedy order visits every node after all the paths through it, children in
draft order: the depth-first post-order.  Its tests and updates are therefore those of traversal
verification (Weng et al., arXiv 2505.12398; :mod:`~multidraft.verifiers.traversal`), and ``gbv`` has the
law of ``traversal-seq`` on every tree.  It is implemented here path by path, independently of the
traversal's recursion (only the node state :class:`~multidraft.verifiers.traversal.State` is shared):
the verification is a sequence of decisions, one per node in the greedy order, each stopping with
probability w_v given that none before did (the states are functions of the tree alone, so
P(stop at the i-th decision) = w_i prod_{i' < i} (1 - w_{i'})); the tests check this law against the
oracle and against ``traversal-seq``'s, outcome by outcome.  Greedy path-by-path BV is thus not a new
verifier on these trees: the headroom that the optimal tree verifier
(:mod:`multidraft.theory.tree_lp`) shows above traversal-seq lies outside the greedy class
(docs/design.md, "The optimal tree verifier").

The paper's drafts (K paths drawn independently, two of which may share a first token and go on
differently) are not trees of this library, which merges a repeated draft and drafts no subtree for
it; ``gbv`` verifies the trees the decoder drafts.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from multidraft.schemes.base import Scheme, sample_categorical
from multidraft.tree import Tree
from multidraft.verifiers.base import Outcome, Verifier, Walk, outcome_walk
from multidraft.verifiers.proposals import SEQUENTIAL_LAWS, proposals
from multidraft.verifiers.traversal import State

#: A step of a path: (parent node, index of the draft in the parent's tuple).
Edge = tuple[int, int]


def tree_paths(tree: Tree, node: int = 0) -> list[list[Edge]]:
    """The root-to-leaf paths below ``node`` in depth-first order (children in draft order), as edge lists.

    A repeated draft (merged into an earlier child) ends a path of its own of length one below ``node``.
    """
    if not tree.has_drafts(node):
        return [[]]
    out, seen = [], set()
    for index, child in enumerate(tree.children_of(node).tolist()):
        below = [[]] if child in seen or not tree.has_drafts(child) else tree_paths(tree, child)
        out += [[(node, index), *rest] for rest in below]
        seen.add(child)
    return out


def shared(a: list[Edge], b: list[Edge]) -> int:
    """Number of leading edges two paths share."""
    count = 0
    while count < min(len(a), len(b)) and a[count] == b[count]:
        count += 1
    return count


class GreedyMultiPath(Verifier):
    """Greedy multi-path block verification (module docstring)."""

    name = "gbv"
    reference = "greedy multi-path block verification, derived in multidraft.verifiers.gbv (after arXiv 2602.16961)"

    def refusal(self, k: int, law: str) -> str | None:
        if law in SEQUENTIAL_LAWS:
            return None
        return f"its proof needs each draft's law given the earlier ones; known for {', '.join(SEQUENTIAL_LAWS)}"

    def decisions(self, tree: Tree, scheme: Scheme, p, q) -> Iterator[tuple[int, State]]:
        """(node, its state when decided) in the greedy order; a node is yielded before the updates its
        deletion makes, so a caller that stops at it sees the state it stops with."""
        law = scheme.draft_law
        laws = {v: proposals(law, q[v], tree.drafts_of(v)) for v in range(tree.size) if tree.has_drafts(v)}
        states = {0: State(1.0, 0.0, p[0])}
        paths = tree_paths(tree)
        for j, path in enumerate(paths):
            start = shared(path, paths[j - 1]) if j else 0
            stop = shared(path, paths[j + 1]) if j + 1 < len(paths) else 0
            for parent, index in path[start:]:  # enter the path's nodes below its divergence from the last one
                if parent not in states:  # below a draft of probability 0
                    break
                token, child = int(tree.drafts_of(parent)[index]), int(tree.children_of(parent)[index])
                weights = states[parent].child(laws[parent][index], q[parent], token)
                if weights is None:  # q_i(token) = 0: this tree has probability 0 beyond here
                    break
                states[child] = State(*weights, p[child])
            for parent, index in reversed(path[stop:]):  # back up to the branch point with the next path
                child = int(tree.children_of(parent)[index])
                if child in states:
                    yield child, states.pop(child)
                    states[parent].delete_child(laws[parent][index], q[parent])
        yield 0, states[0]

    def verify(self, tree: Tree, scheme: Scheme, p, q, generator) -> Walk:
        self.check_tree(tree, scheme)
        coins = iter(
            torch.rand(
                tree.size + sum(int(tree.drafts_of(v).numel()) for v in range(tree.size) if tree.has_drafts(v)),
                dtype=torch.float64,
                generator=generator,
                device=p.device,
            ).tolist()
        )
        for node, state in self.decisions(tree, scheme, p, q):
            if node == 0 or next(coins) < state.weight:
                return outcome_walk(tree, node, int(sample_categorical(state.token_law(), generator)))
        raise AssertionError("the root always stops the verification")

    def outcomes(self, tree: Tree, scheme: Scheme, p, q) -> list[Outcome]:
        """P(stop at the i-th decision) = w_i prod_{i' < i} (1 - w_{i'}), the root last with w = 1."""
        self.check_tree(tree, scheme)
        out, alive = [], 1.0
        for node, state in self.decisions(tree, scheme, p, q):
            out.append(Outcome(node, alive * state.weight, state.token_law()))
            alive *= state.complement
        return out


VERIFIER = GreedyMultiPath()
