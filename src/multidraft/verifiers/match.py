"""llama.cpp's own speculative rule, as a labelled baseline: sample the target, accept while it matches.

llama.cpp's speculative decoding with a draft model (its server and
``examples/speculative-simple``) drafts the draft model's top-1 chain,
x_{i+1} = argmax q_i, and at temperature T > 0 verifies it by sampling the
target at every chain node and comparing (``common_sampler_sample_and_accept_n``
in its ``common/sampling.cpp``): with the chain root = n_0, n_1, .., n_g and P_i = p at n_i,

    y_i ~ P_i independently,   accept X_{i+1} while y_i = X_{i+1},

and the first y_i that differs (or y_g at the end of the chain) is the last
emitted token.  The draft's probabilities are never read.  Lossless for any
drafts: given the path so far, the emitted token at n_i is exactly y_i ~ P_i,
whether it continues the chain or not.  The exact law: the walk stops at n_i
with probability

    prod_{j < i} P_j(X_{j+1}) * (1 - P_i(X_{i+1}))     (i < g; 1 - P_i(X) summed over the other tokens)

and emits y ~ P_i off X_{i+1}; it reaches the leaf n_g with probability
prod_{j < g} P_j(X_{j+1}) and emits y ~ P_g.  Draft X_{i+1} is accepted with
probability P_i(X_{i+1}).  On a top-1 chain this is the token walk of
``topk`` (alpha = p(argmax q)), the optimum for a deterministic draft; the
same test on a sampled draft x ~ q would waste acceptance, since the ratio
test's min(1, p(x)/q(x)) is >= p(x), strictly where 0 < p(x) < 1 and
q(x) < 1.  Only the top-1 chain (draft law ``topk``, one draft per node) is
what the engine drafts, so :meth:`Match.refusal` refuses every other tree and draft law.
"""

from __future__ import annotations

import torch

from multidraft.schemes.base import Scheme, sample_categorical
from multidraft.tree import Tree
from multidraft.verifiers.base import Outcome, Verifier, Walk, outcome_walk
from multidraft.verifiers.block import chain_nodes

#: The one draft law this rule is defined on: deterministic top-1 drafts.
MATCH_LAW = "topk"


class Match(Verifier):
    name = "match"
    reference = "llama.cpp common_sampler_sample_and_accept_n: sample the target, accept while equal"

    def refusal(self, k: int, law: str) -> str | None:
        if k > 1:
            return "the match rule verifies the draft's top-1 chain: every node must draw exactly one draft"
        if law != MATCH_LAW:
            return f"the match rule is defined on the draft's top-1 chain only (draft law {MATCH_LAW!r})"
        return None

    def verify(self, tree: Tree, scheme: Scheme, p, q, generator) -> Walk:
        """One y_i ~ P_i per chain node in one batched draw; the first mismatch ends the walk."""
        self.check_tree(tree, scheme)
        nodes = chain_nodes(tree)  # n_0 .. n_g
        drawn = sample_categorical(p[nodes], generator).tolist()  # [g + 1] y_i
        drafts = tree.tokens[nodes[1:]].tolist()  # [g] X_1 .. X_g
        stop = next((i for i, (y, x) in enumerate(zip(drawn, drafts)) if y != x), len(drafts))
        return outcome_walk(tree, nodes[stop], int(drawn[stop]))

    def outcomes(self, tree: Tree, scheme: Scheme, p, q) -> list[Outcome]:
        """Stop at n_i (module docstring); the leaf emits from P_g."""
        self.check_tree(tree, scheme)
        nodes = chain_nodes(tree)
        out, reach = [], 1.0
        for node, child in zip(nodes[:-1], nodes[1:]):
            x = int(tree.tokens[child])
            others = p[node].index_fill(0, torch.tensor([x], device=p.device), 0)  # [V] P_i off X_{i+1}
            out.append(Outcome(node, reach * float(others.sum()), others))
            reach *= float(p[node, x])
        out.append(Outcome(nodes[-1], reach, p[nodes[-1]]))
        return out


VERIFIER = Match()
