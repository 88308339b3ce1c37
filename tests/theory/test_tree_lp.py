"""The optimal tree verifier LP (theory.tree_lp) against alpha*, block verification and every verifier.

* depth 1: the optimum is 1 + alpha* (Hu et al.; ``optimal_acceptance``) for every draft law, to 1e-9;
* chains: the optimum is block verification's expected tokens (Sun et al.; Thomas and Pal), to 1e-9;
* every implemented verifier, averaged exactly over the drafted trees, is at most the optimum, on the
  oracle's degenerate tables and on Dirichlet tables;
* its duals certify it: E_T[max over the paths of T of the dual path values] equals the optimum.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from multidraft import schemes, verifiers
from multidraft.shapes import check_shape, format_shape, parse_shape, shape_depth
from multidraft.theory.optimal import optimal_acceptance
from multidraft.theory.tree_lp import optimal_tree_tokens
from tests.support.oracle import continued, drafted_trees, node_laws, table, target_law


def dirichlet_table(vocab: int, depth: int, seed: int) -> dict:
    """p ~ Dirichlet(1) and q = (p + an independent Dirichlet(1) draw) / 2 at every context."""
    rng = np.random.default_rng(seed)
    out = {}
    for context in (c for n in range(depth + 1) for c in itertools.product(range(vocab), repeat=n)):
        p = rng.dirichlet(np.ones(vocab))
        out[context] = (p, (p + rng.dirichlet(np.ones(vocab))) / 2)
    return out


def average_tokens(pairs: dict, verifier: str, scheme: str, shape) -> float:
    """E[accepted + 1] of a verifier over every tree the scheme's draft law grows on ``shape``."""
    rule, law = verifiers.get(verifier), schemes.get(scheme)
    total = 0.0
    for tree, contexts, prob in drafted_trees(pairs, law.draft_law, shape):
        p, q = node_laws(pairs, tree, contexts)
        total += prob * rule.expected_tokens(tree, law, p, q)
    return total


@pytest.mark.parametrize(
    "law,k", [("iid", 1), ("iid", 2), ("iid", 3), ("wor", 2), ("wor", 3), ("hub", 2), ("greedy", 2), ("topk", 2)]
)
def test_depth_one_is_one_plus_alpha_star(law, k):
    for vocab, seed in [(3, 0), (3, 1), (4, 2), (4, 3)]:
        for pairs in (table(vocab, 1, seed), dirichlet_table(vocab, 1, seed)):
            optimum = optimal_tree_tokens(pairs, law, [k])
            assert abs(optimum.tokens - 1 - optimal_acceptance(law, *pairs[()], k)) <= 1e-9, (vocab, seed)
            assert optimum.bound >= optimum.tokens - 1e-9


@pytest.mark.parametrize(
    "scheme,shape,seeds",
    [("rrs", "1,1", 2), ("rrs", "1,1,1", 1), ("topk", "1,1", 2), ("topk", "1,1,1", 2), ("rrs-wor", "1/1", 2)],
)
def test_chains_reach_block_verification(scheme, shape, seeds):
    """Block verification is optimal on chains (Sun et al. among on-path verifiers, Thomas and Pal among all)."""
    shape = parse_shape(shape)
    for seed in range(seeds):
        for pairs in (table(3, shape_depth(shape), seed), dirichlet_table(3, shape_depth(shape), seed)):
            optimum = optimal_tree_tokens(pairs, schemes.get(scheme).draft_law, shape).tokens
            assert abs(optimum - average_tokens(pairs, "block", scheme, shape)) <= 1e-9, seed


SHAPES = [parse_shape(s) for s in ("2", "1,1", "2,1", "1,2", "2,2", "2/1,0")]


def fits(verifier: str, scheme: str, shape) -> bool:
    try:
        check_shape(shape, schemes.get(scheme))
        verifiers.get(verifier).check(shape, schemes.get(scheme))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("shape", SHAPES, ids=format_shape)
def test_every_verifier_is_at_most_the_optimum(shape):
    depth = shape_depth(shape)
    for pairs in (table(3, depth, seed=11), dirichlet_table(3, depth, seed=12)):
        optimum = {}
        for scheme in schemes.names():
            law = schemes.get(scheme).draft_law
            for verifier in verifiers.names():
                if not fits(verifier, scheme, shape) or (scheme == "otm" and depth > 1):
                    continue
                if law not in optimum:
                    optimum[law] = optimal_tree_tokens(pairs, law, shape).tokens
                tokens = average_tokens(pairs, verifier, scheme, shape)
                assert tokens <= optimum[law] + 1e-9, (verifier, scheme, tokens, optimum[law])


def test_the_duals_certify_the_optimum():
    """With beta the duals of X(z y) <= p(y | z) X(z): E_T[max_w sum_{z <= w} c(z)] = the optimum (strong duality),
    c(z) = 1 - beta(z) + sum_y p(y | z) beta(z y); a lower value for some tree law would contradict the LP."""
    shape = parse_shape("2,2")
    pairs = dirichlet_table(3, 2, seed=5)
    optimum = optimal_tree_tokens(pairs, "wor", shape)
    beta = optimum.prices
    total = 0.0
    for tree, contexts, prob in drafted_trees(pairs, "wor", shape):
        value = [0.0] * tree.size
        for node in range(tree.size - 1, -1, -1):  # children after parents: breadth-first ids
            context = contexts[node]
            prices = np.array([beta.get(context + (y,), 0.0) for y in range(3)])
            value[node] = 1.0 + float(pairs[context][0] @ prices)
            if tree.has_drafts(node):
                value[node] += max(
                    [0.0] + [value[c] - prices[int(tree.tokens[c])] for c in set(tree.children_of(node).tolist())]
                )
        total += prob * value[0]
    assert abs(total - optimum.tokens) <= 1e-9
    assert optimum.tokens > average_tokens(pairs, "traversal-seq", "rrs-wor", shape) + 1e-3  # headroom here


def test_the_optimal_law_is_lossless_and_emits_from_paths():
    """The returned laws: x sums to 1, every emitted u = (z, y) has x(z) > 0, and the emitted law continued by
    the target is the target's law of the first depth + 1 tokens."""
    pairs = table(3, 2, seed=3)
    optimum = optimal_tree_tokens(pairs, "iid", [2, 1])
    assert abs(sum(optimum.paths.values()) - 1) <= 1e-9
    per_path: dict[tuple, float] = {}
    for u, mass in optimum.emitted.items():
        per_path[u[:-1]] = per_path.get(u[:-1], 0.0) + mass
    assert all(abs(mass - optimum.paths.get(z, 0.0)) <= 1e-9 for z, mass in per_path.items())  # sum_y M(z y) = x(z)
    law = np.zeros(27)
    for u, mass in optimum.emitted.items():
        continued(pairs, u, mass, 3, 3, law)
    assert np.abs(law - target_law(pairs, 3, 3)).max() <= 1e-9


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="too large"):
        optimal_tree_tokens(dirichlet_table(8, 1, 0) | {(): (np.ones(50) / 50, np.ones(50) / 50)}, "iid", [2, 2])
    with pytest.raises(ValueError, match="no \\(p, q\\) for context"):
        optimal_tree_tokens({(): (np.ones(3) / 3, np.ones(3) / 3)}, "iid", [1, 1])
    with pytest.raises(ValueError, match="unknown draft law"):
        optimal_tree_tokens(table(3, 1, 0), "nope", [1])
