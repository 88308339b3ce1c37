"""Token-level verification: the walk from the root (DESIGN §2; :func:`walk`).

At node u with drafts x_u the scheme's kernel pi_u(. | x_u; p_u, q_u) draws
the output; if it is a draft the walk moves to that child, else it stops.
At a leaf (or a root without drafts: plain decoding) it emits a bonus token
y ~ p there.  Lossless for every scheme and tree because every kernel is lossless per node
(sum_x Q(x) pi(y | x) = p(y)) and, given the path so far, the drafts at the
current node are fresh draws from the draft law.

Expected emitted tokens of one drafted tree:

    E[a + 1] = 1 + sum_{v != root} P(reach v),
    P(reach c) = P(reach u) pi_u(token(c) | x_u)   for each child c of u

(distinct children of u carry distinct tokens, so the events are disjoint).

The same count integrated over each node's own drafts (:func:`integrated_tokens`):
the walk accepts a = sum_u 1{reach u} 1{accept at u} drafts, the event
"accept at u" (the kernel at u outputs one of its drafts) having probability
A_u given the drafts x_u.  Given everything drawn above u, x_u are fresh
draws from the draft law at q_u, and reaching u does not depend on them, so

    E[1{reach u} A_u] = E[P(reach u) alpha_u],   alpha_u = E_{x_u}[A_u],

the scheme's exact acceptance rate at (p_u, q_u) (:mod:`multidraft.theory.acceptance`).
Hence 1 + sum_u P(reach u | tree) alpha_u has the same expectation as
1 + sum_{v != root} P(reach v), and is free of the noise of each node's own draws.
"""

from __future__ import annotations

import torch

from multidraft.schemes.base import Scheme, sample_categorical
from multidraft.theory.acceptance import acceptance
from multidraft.tree import Tree
from multidraft.verifiers.base import Outcome, Verifier, Walk


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
        token, accepted = scheme.verify(p[node], q[node], drafts, generator, check=False)
        if not bool(accepted):
            return Walk(path, [tokens[i] for i in path] + [int(token)], visited)
        node = int(tree.children_of(node)[drafts == token][0])
        path.append(node)
    bonus = int(sample_categorical(p[node], generator))
    return Walk(path, [tokens[i] for i in path] + [bonus], visited)


def kernel_at_drafts(scheme: Scheme, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> torch.Tensor:
    """pi(x_j | x) for each draft j: p, q [..., V], drafts [..., k] -> [..., k] (a repeated draft repeats its value).

    From the scheme's :class:`~multidraft.schemes.base.VerificationLaw`:
    pi(y | x) = sum_i w_i [x_i = y] + w_res r(y) / sum r, read at y = x_j only.
    """
    law = scheme.verification_law(p, q, drafts, check=False)
    same = (drafts.unsqueeze(-1) == drafts.unsqueeze(-2)).to(law.accept.dtype)  # [..., k, k]
    direct = (same * law.accept.unsqueeze(-2)).sum(-1)  # [..., k]
    mass = law.residual.sum(-1, keepdim=True)  # [..., 1]
    spill = law.reject.unsqueeze(-1) * law.residual.gather(-1, drafts) / torch.where(mass > 0, mass, 1)
    return direct + torch.where(mass > 0, spill, 0)


def draft_values(tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor) -> dict[int, torch.Tensor]:
    """pi_u(x_uj | x_u) for every node u with drafts, as float64 [k_u] on the CPU.

    Nodes with the same number of drafts are verified in one batched call.
    """
    by_k: dict[int, list[int]] = {}
    for node in range(tree.size):
        if tree.has_drafts(node):
            by_k.setdefault(int(tree.drafts_of(node).numel()), []).append(node)
    values = {}
    for nodes in by_k.values():
        index = torch.tensor(nodes, device=p.device)
        drafts = torch.stack([tree.drafts_of(node) for node in nodes]).to(p.device)  # [n, k]
        rows = kernel_at_drafts(scheme, p[index], q[index], drafts).double().cpu()  # [n, k]
        values.update(zip(nodes, rows))
    return values


def reach_probabilities(tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """P(the token walk accepts node v) for every node [N] (1 at the root), float64.

    Node ids are breadth first, so a parent's probability is final before its children are read.
    Repeated drafts share a child and have equal values, so assigning by draft is exact.
    """
    values = draft_values(tree, scheme, p, q)
    reach = torch.zeros(tree.size, dtype=torch.float64)
    reach[0] = 1.0
    for node in range(tree.size):
        if node in values:
            reach[tree.children_of(node).cpu()] = reach[node] * values[node]
    return reach


def integrated_tokens(tree: Tree, scheme: Scheme, p: torch.Tensor, q: torch.Tensor) -> list[float]:
    """1 + sum_{u with drafts, depth(u) < d} P(reach u) alpha_u for the tree cut at d = 1..depth (module docstring).

    Unbiased for the expected tokens per step of a tree of depth d drafted by
    the scheme's law, like the cut's ``expected_tokens``, with less variance.
    alpha_u is computed in float64 from p_u, q_u renormalised (they sum to 1
    up to the rounding of their dtype).  Needs a closed-form rate for the
    scheme at each node's k (every scheme but ``otm``; ``rrs-wor`` with k <= 2 at
    a large vocabulary).
    """
    reach = reach_probabilities(tree, scheme, p, q)  # [N]
    by_depth = [0.0] * tree.depth
    for node in range(tree.n_internal):
        if tree.has_drafts(node) and reach[node] > 0:
            p_u, q_u = (x[node].double().cpu().numpy() for x in (p, q))
            rate = acceptance(scheme.name, p_u / p_u.sum(), q_u / q_u.sum(), int(tree.drafts_of(node).numel()))
            by_depth[int(tree.depths[node])] += float(reach[node]) * rate
    totals, running = [], 1.0
    for term in by_depth:
        running += term
        totals.append(running)
    return totals


class TokenVerifier(Verifier):
    """The token-level walk; every scheme, every tree."""

    name = "token"

    def verify(self, tree: Tree, scheme: Scheme, p, q, generator) -> Walk:
        return walk(tree, scheme, p, q, generator)

    def outcomes(self, tree: Tree, scheme: Scheme, p, q) -> list[Outcome]:
        """Node u is the last accepted with P(reach u) pi_u(y) for each non-draft y (a leaf: y ~ p_u)."""
        reach, out = reach_probabilities(tree, scheme, p, q).tolist(), []
        for node in range(tree.size):
            if not tree.has_drafts(node):
                out.append(Outcome(node, reach[node], p[node]))
                continue
            drafts = tree.drafts_of(node)
            kernel = scheme.kernel(p[node], q[node], drafts, check=False).scatter(-1, drafts, 0)  # [V] off the drafts
            out.append(Outcome(node, reach[node] * float(kernel.sum()), kernel))
        return out

    def expected_tokens(self, tree: Tree, scheme: Scheme, p, q) -> float:
        """1 + sum_{v != root} P(reach v) (module docstring): no residual law is formed."""
        return float(reach_probabilities(tree, scheme, p, q).sum())


VERIFIER = TokenVerifier()
