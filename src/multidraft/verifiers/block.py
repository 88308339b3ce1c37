"""Block verification of a drafted chain (Sun, Mendlovic, Leviathan, Aharoni, Beirami, Ro, Suresh,
"Block Verification Accelerates Speculative Decoding", ICLR 2025, arXiv 2403.10444, Algorithm 2).

The chain root = n_0, n_1, .., n_g carries drafts X_1..X_g, X_i drawn at
n_{i-1} from its proposal q_{i-1} (x ~ q, or the argmax for ``topk``, where
q_{i-1} = delta_{X_i}); P_i = p at n_i.  With p_0 = 1 (the paper's
weights p_i and stopping probabilities h_i):

    p_i = min(1, p_{i-1} P_{i-1}(X_i) / q_{i-1}(X_i)),                    i = 1..g
    S_i = sum_x (p_i P_i(x) - q_i(x))^+,   h_i = S_i / (S_i + 1 - p_i),    i = 0..g-1
    h_g = p_g.

Going backwards, i = g, g-1, .., 0, the first i with eta_i <= h_i (eta_i
uniform) is tau: the drafts X_1..X_tau are accepted and one more token is
drawn from norm((p_tau P_tau - q_tau)^+) (from P_g if tau = g).  h_0 = 1, so
tau is always found.  P(tau = i) = h_i prod_{j > i} (1 - h_j), with
1 - h_i = (1 - p_i) / (S_i + 1 - p_i) and 1 - p_i = (q - p_{i-1} P)^+ / q at
X_i, all free of cancellation.

Lossless (the paper's validity theorem) whenever the drafts are drawn
autoregressively from the q_i used here; expected accepted length
sum_i E[p_i], the best of every valid verification that reads the
on-chain probabilities (its optimality theorem), hence never below
token-level verification.  (Algorithm 2 is the paper's numbering for block
verification; its theorem and equation numbers were not available here.)  It is the chain case of traversal verification
(:mod:`~multidraft.verifiers.traversal`), which has the same weights and
updates.  Supported draft laws at one draft per node: ``iid``, ``wor``,
``greedy`` (all x ~ q at k = 1) and ``topk`` (x = argmax q).
"""

from __future__ import annotations

import torch

from multidraft.schemes.base import Scheme, sample_categorical
from multidraft.tree import Tree
from multidraft.verifiers.base import Outcome, Verifier, Walk, outcome_walk
from multidraft.verifiers.proposals import proposals

#: Draft laws whose single draft per node has a known proposal q_i.
CHAIN_LAWS = ("iid", "wor", "greedy", "topk")


def chain_nodes(tree: Tree) -> list[int]:
    """n_0 = root, n_1, .., n_g: follow the single child while a node has drafts."""
    nodes = [0]
    while tree.has_drafts(nodes[-1]):
        nodes.append(int(tree.children_of(nodes[-1])[0]))
    return nodes


class Chain:
    """The weights of Algorithm 2 for one drafted chain (module docstring)."""

    def __init__(self, tree: Tree, law: str, p: torch.Tensor, q: torch.Tensor):
        self.nodes = chain_nodes(tree)
        inner = self.nodes[:-1]  # [g] the nodes with a draft
        self.p, self.g = p, len(inner)
        tokens = tree.tokens[self.nodes[1:]].to(p.device)  # [g] X_1..X_g
        if self.g == 0:
            self.h, self.miss = [1.0], [0.0]
            return
        props = [proposals(law, q[node], tree.drafts_of(node))[0] for node in inner]
        rows = slice(0, self.g) if inner == list(range(self.g)) else torch.tensor(inner, device=p.device)
        p_inner, q_inner = p[rows], q[rows]  # [g, V], views when the chain has ids 0..g (breadth first)
        point = props[0].point >= 0  # topk: q_{i-1} = delta_{X_i}
        scale = p.new_tensor([prop.scale for prop in props])  # [g]
        target_x = p_inner.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).tolist()  # P_{i-1}(X_i)
        draft_x = [1.0] * self.g if point else (q_inner.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * scale).tolist()
        weight, complement = [1.0], [0.0]  # p_i and 1 - p_i
        for t, d in zip(target_x, draft_x):
            mass = weight[-1] * t
            weight.append(min(1.0, mass / d) if d > 0 else 0.0)
            complement.append(max(d - mass, 0.0) / d if d > 0 else 1.0)
        self.excess = p_inner * p.new_tensor(weight[:-1]).unsqueeze(-1)  # [g, V] p_i P_i, the one allocation
        if point:
            self.excess[torch.arange(self.g, device=p.device), tokens] -= 1
        else:
            self.excess.addcmul_(q_inner, scale.unsqueeze(-1), value=-1)
        self.excess.clamp_(min=0)  # (p_i P_i - q_i)^+
        s = self.excess.sum(-1).tolist()  # [g] S_i
        self.h = [si / (si + ci) if si + ci > 0 else 1.0 for si, ci in zip(s, complement)] + [weight[-1]]
        self.miss = [ci / (si + ci) if si + ci > 0 else 0.0 for si, ci in zip(s, complement)] + [complement[-1]]

    def token_law(self, i: int) -> torch.Tensor:
        """The law (unnormalised) of the token after accepting X_1..X_i."""
        return self.p[self.nodes[i]] if i == self.g else self.excess[i]


class BlockVerifier(Verifier):
    name = "block"
    reference = "Sun et al. 2025, arXiv 2403.10444"

    def refusal(self, k: int, law: str) -> str | None:
        if k > 1:
            return "block verification verifies a chain: every node must draw exactly one draft"
        if law not in CHAIN_LAWS:
            return f"its single draft must come from one of the draft laws {', '.join(CHAIN_LAWS)}"
        return None

    def verify(self, tree: Tree, scheme: Scheme, p, q, generator) -> Walk:
        self.check_tree(tree, scheme)
        chain = Chain(tree, scheme.draft_law, p, q)
        eta = torch.rand(chain.g + 1, dtype=torch.float64, generator=generator, device=p.device).tolist()
        tau = next(i for i in range(chain.g, -1, -1) if eta[i] < chain.h[i] or i == 0)
        return outcome_walk(tree, chain.nodes[tau], int(sample_categorical(chain.token_law(tau), generator)))

    def outcomes(self, tree: Tree, scheme: Scheme, p, q) -> list[Outcome]:
        """P(tau = i) = h_i prod_{j > i} (1 - h_j)."""
        self.check_tree(tree, scheme)
        chain = Chain(tree, scheme.draft_law, p, q)
        out, alive = [], 1.0
        for i in range(chain.g, -1, -1):
            out.append(Outcome(chain.nodes[i], alive * chain.h[i], chain.token_law(i)))
            alive *= chain.miss[i]
        return out


VERIFIER = BlockVerifier()
