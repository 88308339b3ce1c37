"""Traversal verification (Weng et al., "Traversal Verification for Speculative Tree Decoding",
NeurIPS 2025, arXiv 2505.12398), and its extension to every sequential draft law.

The rule below is the paper's (sequence acceptance rates, leaf-to-root
traversal, residual update of the parent when a node is deleted), restated
with its proof in this module's notation; the paper's section, algorithm
and equation numbers were not available here to cite.

The tree is verified from the leaves to the root, in depth-first post-order
(children in draft order, each child's whole subtree before the next
child).  Every node v carries a *sequence acceptance weight* w_v and a
target law P_v (initially p_v), kept together as the unnormalised mass
U_v = w_v P_v (sum U_v = w_v):

* the root starts with w = 1, U = p_root;
* child c of u, drafted as x with proposal q_j (the law of the j-th draft of
  u given the earlier ones, :mod:`~multidraft.verifiers.proposals`), starts
  with w_c = min(1, U_u(x) / q_j(x)), U_c = w_c p_c
  (the paper's sequence acceptance rate, min(1, p_parent p(x) / q(x)));
* after c's subtree has been traversed, c is accepted -- the path root..c
  is emitted with one token y ~ P_c -- with probability w_c; else c is
  deleted and its parent becomes (the paper's residual update)

      U_u <- (U_u - q_j)^+ / R,   w_u <- S / R,   1 - w_u <- (1 - w_u) / R,
      S = sum (U_u - q_j)^+,      R = sum (q_j - U_u)^+ = S + 1 - w_u,

  and the traversal moves to the next child of u, then to u itself.

The root ends with w = 1, so it always accepts: one token y ~ P_root.

**Lossless.**  Claim, for a node v with state (w, U = w P) whose remaining
children x_j are drawn x_j | x_<j ~ q_j, each with an independent subtree
drafted from the draft law: for every continuation y s,

    P(v not deleted, emitted tokens below v continued by the target = y s) = w P(y) T(s | y)

(T: the target's law of the rest), and so P(v deleted) = 1 - w.  For a
leaf it is the acceptance test.  For child j, by the claim for the child
and x_j ~ q_j: the child contributes q_j(x) min(1, U(x)/q_j(x)) = min(U(x), q_j(x))
at y = x, and is deleted with probability sum_x (q_j - U)^+ = R; the claim
for v's updated state then contributes R (U - q_j)^+(y) / R, and
min(U, q_j) + (U - q_j)^+ = U = w P.  At the root (w = 1) this is the
target's law: the emitted sequence is exactly distributed as the target's.
The proof needs only that x_j | x_<j ~ q_j with q_j known to the verifier and
subtrees drawn independently given their roots; a repeated i.i.d. draft
(merged into the earlier child's node) is verified as a leaf of its own
(w_c from the current U, y ~ p_c): its subtree is empty, which the claim allows.

**Which draft laws.**  The paper's proof covers trees whose children are
drawn i.i.d. from q at every node (``traversal``: schemes with the ``iid``
draft law, sps/rrs/kseq/otm, and any scheme at nodes with one draft, where
the draft is x ~ q -- except ``topk``, whose single draft is the argmax).
``traversal-seq`` uses the proof above for every law with a sequential
form: also ``wor`` (rrs-wor), ``greedy``, ``hub`` (spechub) and ``topk``.
The scheme's own verification kernel is not used: only its draft law.

Cost: one pass over the vocabulary per deleted child drafted from a spread
law (as recursive rejection pays per rejected draft), O(1) for a point
proposal (:class:`State`); sampling stops at the first accepted node.
The exact law (:meth:`Traversal.outcomes`, behind ``expected_tokens``)
visits every node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from multidraft.schemes.base import Scheme, sample_categorical
from multidraft.tree import Tree
from multidraft.verifiers.base import Outcome, Verifier, Walk, outcome_walk
from multidraft.verifiers.proposals import SEQUENTIAL_LAWS, SINGLE_DRAW_FROM_Q, Proposal, proposals


@dataclass
class State:
    """(w, 1 - w, U) of a node.

    U is kept lazily as ``factor`` p_node with the ``zeroed`` tokens removed while every deleted
    child had a point proposal (delta_x: the deletion only removes x and rescales, O(1) instead of
    a pass over the vocabulary); it is materialised as ``mass`` [V] at the first other deletion.
    """

    weight: float
    complement: float
    p: torch.Tensor  # [V] the node's target law
    mass: torch.Tensor | None = None  # [V] U once materialised
    factor: float = -1.0  # U = factor p off ``zeroed`` while lazy (set to w at the start)
    zeroed: list[int] = field(default_factory=list)

    def __post_init__(self):
        if self.factor < 0:
            self.factor = self.weight

    def at(self, token: int) -> float:
        """U(token)."""
        if self.mass is not None:
            return float(self.mass[token])
        return 0.0 if token in self.zeroed else self.factor * float(self.p[token])

    def child(self, proposal: Proposal, q: torch.Tensor, token: int) -> tuple[float, float] | None:
        """(w_c, 1 - w_c) of the child drafted as ``token``; None if q_j(token) = 0 (probability 0)."""
        q_x = proposal.at(q, token)
        if not q_x > 0:
            return None
        u_x = self.at(token)
        return min(1.0, u_x / q_x), max(q_x - u_x, 0.0) / q_x

    def delete_child(self, proposal: Proposal, q: torch.Tensor) -> None:
        """The residual update after a deleted child (module docstring).

        For q_j = delta_x: (U - delta_x)^+ is U off x (U(x) <= w <= 1), so S = w - U(x), taken as the
        sum of the remaining entries instead when U(x) > w / 2, where the subtraction would cancel.
        """
        if proposal.point >= 0 and self.mass is None:
            x = proposal.point
            u_x = self.at(x)
            if u_x <= self.weight / 2:
                s = self.weight - u_x
            else:
                kept = self.p.index_fill(0, self.p.new_tensor(self.zeroed + [x], dtype=torch.int64), 0)
                s = self.factor * float(kept.sum())
            r = s + self.complement
            if r > 0:
                self.factor, self.zeroed = self.factor / r, self.zeroed + ([x] if x not in self.zeroed else [])
                self.weight, self.complement = s / r, self.complement / r
            return
        mass = self.mass if self.mass is not None else self.token_law() * self.factor  # [V] U
        diff = proposal.subtract_from(mass, q)  # [V] U - q_j, a new tensor
        positive = diff.clamp_(min=0)
        s = float(positive.sum())
        r = s + self.complement
        if not r > 0:  # deletion had probability 0
            return
        self.mass, self.weight, self.complement = positive.div_(r), s / r, self.complement / r

    def token_law(self) -> torch.Tensor:
        """U up to a factor: the (unnormalised) law of the token emitted when this node is accepted."""
        if self.mass is not None:
            return self.mass
        if self.zeroed:
            return self.p.index_fill(0, self.p.new_tensor(self.zeroed, dtype=torch.int64), 0)
        return self.p


def children(tree: Tree, law: str, q: torch.Tensor, node: int):
    """(draft token, child id, proposal, repeats an earlier draft) for the drafts of ``node`` in order."""
    drafts, kids = tree.drafts_of(node), tree.children_of(node).tolist()
    laws = proposals(law, q, drafts)
    seen = set()
    for token, child, proposal in zip(drafts.tolist(), kids, laws):
        yield token, child, proposal, child in seen
        seen.add(child)


class Traversal(Verifier):
    """Leaf-to-root traversal; ``laws_any_k`` are the draft laws allowed at nodes with several drafts."""

    def __init__(self, name: str, laws_any_k: tuple[str, ...], laws_one_draft: tuple[str, ...], reference: str):
        self.name, self.laws_any_k, self.laws_one_draft, self.reference = name, laws_any_k, laws_one_draft, reference

    def refusal(self, k: int, law: str) -> str | None:
        allowed = self.laws_any_k if k > 1 else self.laws_one_draft
        if law in allowed:
            return None
        what = "several drafts per node" if k > 1 else "one draft per node"
        return f"with {what} its proof ({self.reference}) covers the draft laws {', '.join(allowed)} only"

    # -- sampling -----------------------------------------------------------------------------
    def verify(self, tree: Tree, scheme: Scheme, p, q, generator) -> Walk:
        self.check_tree(tree, scheme)
        law = scheme.draft_law
        coins = iter(torch.rand(tree.size + sum_drafts(tree), dtype=torch.float64, generator=generator,
                                device=p.device).tolist())

        def visit(node: int, state: State):
            if tree.has_drafts(node):
                for token, child, proposal, repeat in children(tree, law, q[node], node):
                    weights = state.child(proposal, q[node], token)
                    if weights is None:
                        continue
                    if repeat:  # a leaf of its own
                        found = (child, p[child]) if next(coins) < weights[0] else None
                    else:
                        found = visit(child, State(*weights, p[child]))
                    if found is not None:
                        return found
                    state.delete_child(proposal, q[node])
            return (node, state.token_law()) if next(coins) < state.weight else None

        node, law_of_token = visit(0, State(1.0, 0.0, p[0]))
        return outcome_walk(tree, node, int(sample_categorical(law_of_token, generator)))

    # -- exact law ----------------------------------------------------------------------------
    def outcomes(self, tree: Tree, scheme: Scheme, p, q) -> list[Outcome]:
        """Every (accepted node, probability, unnormalised law of the emitted token)."""
        self.check_tree(tree, scheme)
        law, out = scheme.draft_law, []

        def visit(node: int, state: State, reach: float) -> float:
            """Appends the outcomes below ``node`` (reached with probability ``reach``); returns P(accept) there."""
            accepted, alive = 0.0, 1.0
            if tree.has_drafts(node):
                for token, child, proposal, repeat in children(tree, law, q[node], node):
                    weights = state.child(proposal, q[node], token)
                    if weights is None:
                        continue
                    if repeat:
                        out.append(Outcome(child, reach * alive * weights[0], p[child]))
                        below = weights[0]
                    else:
                        below = visit(child, State(*weights, p[child]), reach * alive)
                    accepted += alive * below
                    alive *= 1.0 - below
                    state.delete_child(proposal, q[node])
            out.append(Outcome(node, reach * alive * state.weight, state.token_law()))
            return accepted + alive * state.weight

        visit(0, State(1.0, 0.0, p[0]), 1.0)
        return out


def sum_drafts(tree: Tree) -> int:
    return sum(int(tree.drafts_of(node).numel()) for node in range(tree.size) if tree.has_drafts(node))


PAPER = Traversal("traversal", ("iid",), SINGLE_DRAW_FROM_Q, "Weng et al. 2025, arXiv 2505.12398")
SEQUENTIAL = Traversal(
    "traversal-seq", SEQUENTIAL_LAWS, SEQUENTIAL_LAWS, "the extension proved in multidraft.verifiers.traversal"
)
