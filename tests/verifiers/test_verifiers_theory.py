"""Exact expected tokens per step of every verifier, on the oracle's tiny tables.

E[accepted + 1] is averaged exactly over every drafted tree (``oracle.emitted_law``):

* block verification is never below token-level verification of the same chain
  (Sun et al. 2025), and it attains the paper's optimum 1 + sum_i E[p_i],
  computed here from its definition; the paper's two-token example gives
  11/9 accepted drafts against 10/9;
* traversal verification is never below token-level recursive rejection on the
  same tree (Weng et al. 2025's comparison: rrs for i.i.d. drafts, rrs-wor for
  drafts without replacement);
* with deterministic top-k drafts every verifier reaches the optimum
  1 + sum_v P_target(path to v), no lossless rule can do better (llama.cpp's
  ``match`` rule included, on the top-1 chain);
* on a chain sampled from q, block verification accepts more than ``match``
  would on the same drafts (its ratio test min(1, p/q) >= p per draft);
* the token walk's closed form (reach probabilities) equals the mean over its exact outcomes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from multidraft import schemes, verifiers
from multidraft.shapes import parse_shape, shape_depth
from tests.support.oracle import KINDS, drafted_trees, emitted_law, node_laws, table, target_law

TABLES = [(vocab, seed, kinds) for vocab in (3, 4) for seed in range(6) for kinds in (KINDS, ("dirichlet",))]


def expected(verifier: str, scheme: str, pairs: dict, spec: str, vocab: int) -> float:
    """E[tokens per step] of the verifier, averaged exactly over every drafted tree (the emitted law
    is checked on the way, here also at V = 4)."""
    shape = parse_shape(spec)
    depth = shape_depth(shape)
    law, mean = emitted_law(pairs, verifiers.get(verifier), schemes.get(scheme), shape, depth, vocab)
    assert np.abs(law - target_law(pairs, depth + 1, vocab)).max() <= 1e-12
    return mean


def mean_tokens(trees: list, pairs: dict, verifier: str, scheme: str) -> float:
    """The same from a list of drafted trees (enumerated once for several verifiers)."""
    total = 0.0
    for tree, contexts, prob in trees:
        p, q = node_laws(pairs, tree, contexts)
        total += prob * verifiers.get(verifier).expected_tokens(tree, schemes.get(scheme), p, q)
    return total


def block_optimum(pairs: dict, depth: int, vocab: int) -> float:
    """1 + sum_{i=1..depth} E[p_i] over chains X_i ~ q(. | X_<i), p_i = min(1, p_{i-1} p(X_i)/q(X_i)), p_0 = 1."""
    total = 1.0
    for length in range(1, depth + 1):
        for chain in itertools.product(range(vocab), repeat=length):
            prob, weight = 1.0, 1.0
            for i, x in enumerate(chain):
                p, q = pairs[chain[:i]]
                prob, weight = prob * q[x], min(1.0, weight * p[x] / q[x]) if q[x] > 0 else 0.0
            total += prob * weight
    return total


@pytest.mark.parametrize(("vocab", "seed", "kinds"), TABLES)
def test_block_is_never_below_token_level_and_attains_the_optimum(vocab, seed, kinds):
    pairs = table(vocab, 3, seed, kinds)
    for spec in ("1x2", "1x3"):
        block, token = expected("block", "sps", pairs, spec, vocab), expected("token", "sps", pairs, spec, vocab)
        assert block >= token - 1e-12, (spec, block, token)
        assert block == pytest.approx(block_optimum(pairs, int(spec[-1]), vocab), abs=1e-12)
        assert expected("traversal", "sps", pairs, spec, vocab) == pytest.approx(block, abs=1e-12)


def test_the_papers_two_token_example():
    """Sun et al.: M_b = (1/3, 2/3), M_s = (2/3, 1/3), gamma = 2: token 10/9, block 11/9 accepted tokens."""
    law = (np.array([1 / 3, 2 / 3]), np.array([2 / 3, 1 / 3]))
    pairs = {c: law for n in range(3) for c in itertools.product(range(2), repeat=n)}
    assert expected("token", "sps", pairs, "1x2", 2) - 1 == pytest.approx(10 / 9, abs=1e-14)
    assert expected("block", "sps", pairs, "1x2", 2) - 1 == pytest.approx(11 / 9, abs=1e-14)


@pytest.mark.parametrize(("vocab", "seed", "kinds"), [t for t in TABLES if t[0] == 3 and t[1] < 3])
def test_traversal_is_never_below_token_level_recursive_rejection(vocab, seed, kinds):
    pairs = table(vocab, 3, seed, kinds)
    for spec in ("2x2", "3,1", "2,1,1", "2/0,2"):
        for scheme, law, verifier in [("rrs", "iid", "traversal"), ("rrs-wor", "wor", "traversal-seq")]:
            trees = list(drafted_trees(pairs, law, parse_shape(spec)))
            token = mean_tokens(trees, pairs, "token", scheme)
            assert mean_tokens(trees, pairs, verifier, scheme) >= token - 1e-12, (spec, scheme)


@pytest.mark.parametrize("seed", range(4))
def test_deterministic_top_k_drafts_reach_the_optimum_with_every_verifier(seed):
    vocab = 4
    pairs = table(vocab, 3, seed)
    for spec in ("3x2", "2,1,1", "1x3"):
        shape = parse_shape(spec)
        ((tree, contexts, prob),) = drafted_trees(pairs, "topk", shape)  # one tree, probability 1
        optimum = 0.0  # sum over nodes of the target's probability of the path to the node
        for context in contexts:
            optimum += np.prod([pairs[context[:i]][0][x] for i, x in enumerate(context)])
        for verifier in ("token", "traversal-seq") + (("block", "match") if spec == "1x3" else ()):
            assert expected(verifier, "topk", pairs, spec, vocab) == pytest.approx(optimum, abs=1e-12), verifier


@pytest.mark.parametrize("name", [n for n in schemes.names() if n != "otm"])
def test_token_closed_form_equals_the_mean_over_its_outcomes(name):
    token = verifiers.get("token")
    scheme = schemes.get(name)
    spec = "2x2" if name != "sps" else "1x3"
    pairs = table(3, 3, seed=5)
    for tree, contexts, _ in drafted_trees(pairs, scheme.draft_law, parse_shape(spec)):
        p, q = node_laws(pairs, tree, contexts)
        depths = tree.depths.tolist()
        mean = sum(o.probability * (depths[o.node] + 1) for o in token.outcomes(tree, scheme, p, q))
        assert token.expected_tokens(tree, scheme, p, q) == pytest.approx(mean, abs=1e-12)


@pytest.mark.parametrize(("seed", "kinds"), [(seed, kinds) for seed in range(3) for kinds in (KINDS, ("dirichlet",))])
def test_the_ratio_test_on_a_sampled_chain_accepts_more_than_matching_the_same_chain(seed, kinds):
    """``match`` reads only p, so its law on a sampled chain is that of the same chain relabelled ``topk``:
    E[tokens] = 1 + sum_i prod_{j <= i} p_j(X_j), below block verification's 1 + sum_i E[p_i] on every table,
    strictly on tables without point masses."""
    vocab = 3
    pairs = table(vocab, 3, seed, kinds)
    trees = list(drafted_trees(pairs, "iid", parse_shape("1x3")))
    matched = 0.0
    for tree, contexts, prob in trees:
        p, q = node_laws(pairs, tree, contexts)
        matched += prob * verifiers.get("match").expected_tokens(tree, schemes.get("topk"), p, q)
    assert mean_tokens(trees, pairs, "block", "sps") >= matched - 1e-12
    if kinds == ("dirichlet",):
        assert mean_tokens(trees, pairs, "block", "sps") > matched + 1e-3
    assert mean_tokens(trees, pairs, "block", "sps") == pytest.approx(block_optimum(pairs, 3, vocab), abs=1e-12)
