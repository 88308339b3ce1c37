"""The per-tree upper bound (theory.tree_bound) averaged exactly over the drafted trees of tiny tables.

It is 1 + alpha* at depth 1 with theta = 1, never below the optimal tree verifier (theory.tree_lp) for any
theta >= 0, and refuses laws it has no alpha* set for.
"""

from __future__ import annotations

import numpy as np
import pytest

from multidraft.shapes import parse_shape
from multidraft.theory.optimal import optimal_acceptance
from multidraft.theory.tree_bound import tree_bound
from multidraft.theory.tree_lp import optimal_tree_tokens
from tests.support.oracle import drafted_trees, node_laws, table
from tests.theory.test_tree_lp import dirichlet_table


def average_bound(pairs: dict, law: str, shape, values) -> np.ndarray:
    total = 0.0
    for tree, contexts, prob in drafted_trees(pairs, law, shape):
        p, q = node_laws(pairs, tree, contexts)
        total = total + prob * tree_bound(tree, law, p, q, values)
    return total


@pytest.mark.parametrize("law,k", [("iid", 1), ("iid", 2), ("wor", 2), ("wor", 3), ("topk", 2)])
def test_depth_one_with_unit_theta_is_one_plus_alpha_star(law, k):
    for vocab, seed in [(3, 0), (4, 1), (4, 2)]:
        for pairs in (table(vocab, 1, seed), dirichlet_table(vocab, 1, seed)):
            bound = average_bound(pairs, law, (k,), [[1.0]])[0]
            assert abs(bound - 1 - optimal_acceptance(law, *pairs[()], k)) <= 1e-12


@pytest.mark.parametrize("law,spec", [("iid", "2,2"), ("wor", "2,2"), ("iid", "1,1,1"), ("topk", "2,1")])
def test_never_below_the_optimum(law, spec):
    shape = parse_shape(spec)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, 3, size=(20, len(shape))), [[1.0] * len(shape), [0.0] * len(shape)]])
    for pairs in (table(3, len(shape), seed=2), dirichlet_table(3, len(shape), seed=3)):
        optimum = optimal_tree_tokens(pairs, law, shape).tokens
        bounds = average_bound(pairs, law, shape, values)
        assert bounds.min() >= optimum - 1e-9, (bounds.min(), optimum)


def test_refuses_laws_and_thetas_it_cannot_use():
    pairs = table(3, 1, seed=0)
    tree, contexts, _ = next(drafted_trees(pairs, "hub", (2,)))
    p, q = node_laws(pairs, tree, contexts)
    with pytest.raises(ValueError, match="alpha\\* set"):
        tree_bound(tree, "hub", p, q, [[1.0]])
    with pytest.raises(ValueError, match=">= 0"):
        tree_bound(tree, "iid", p, q, [[-1.0]])
    with pytest.raises(ValueError, match="heights"):
        tree_bound(tree, "iid", p, q, np.ones((1, 0)))
