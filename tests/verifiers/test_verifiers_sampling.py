"""Each verifier's sampler draws from its exact law: chi-square of (accepted node, last token) counts
from ``verify`` against ``outcomes`` on fixed drafted trees (fixed seeds, significance 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from multidraft import schemes, verifiers
from multidraft.shapes import parse_shape
from tests.support.oracle import drafted_trees, node_laws, table

SIGNIFICANCE = 1e-4
DRAWS = 3000
VOCAB = 4
#: (verifier, scheme, tree, whether the tree must repeat a draft somewhere: an i.i.d. repeat is verified as a leaf)
CASES = [
    ("token", "rrs", "2,2", False),
    ("block", "sps", "1x3", False),
    ("block", "topk", "1x3", False),
    ("match", "topk", "1x3", False),
    ("traversal", "rrs", "3,1", False),
    ("traversal", "rrs", "3,2", True),
    ("traversal", "rrs", "2/1,2", False),
    ("traversal-seq", "spechub", "2x2", False),
    ("traversal-seq", "rrs-wor", "3,1", False),
    ("gbv", "rrs", "3,2", True),
    ("gbv", "rrs-wor", "2/1,2", False),
    ("traversal-ratio", "rrs", "2,2", True),
    ("traversal-ratio", "rrs-wor", "2,1", False),
]


def distinct(tree) -> bool:
    return all(
        tree.drafts_of(v).unique().numel() == tree.drafts_of(v).numel() for v in range(tree.size) if tree.has_drafts(v)
    )


def pick_tree(pairs, law: str, spec: str, repeats: bool):
    """The first drafted tree with a repeated draft (``repeats``) or with distinct drafts everywhere (the most
    nodes), with its node laws in float32 as the decoder has them."""
    tree, contexts, _ = next(t for t in drafted_trees(pairs, law, parse_shape(spec)) if distinct(t[0]) != repeats)
    p, q = node_laws(pairs, tree, contexts)
    return tree, p.float(), q.float()


@pytest.mark.parametrize(("verifier", "scheme", "spec", "repeats"), CASES)
def test_verify_samples_the_exact_outcome_law(verifier, scheme, spec, repeats):
    pairs = table(VOCAB, 3, seed=3, kinds=("dirichlet",))
    name, scheme = verifier, schemes.get(scheme)
    verifier = verifiers.get(name)
    tree, p, q = pick_tree(pairs, scheme.draft_law, spec, repeats)
    law = np.zeros((tree.size, VOCAB))
    for outcome in verifier.outcomes(tree, scheme, p.double(), q.double()):
        weights = outcome.weights.numpy()
        if outcome.probability > 0:
            law[outcome.node] += outcome.probability * weights / weights.sum()
    generator = torch.Generator().manual_seed(17)
    counts = np.zeros_like(law)
    tokens = tree.tokens.tolist()
    for _ in range(DRAWS):
        walk = verifier.verify(tree, scheme, p, q, generator)
        node = walk.path[-1] if walk.path else 0
        assert walk.tokens[:-1] == [tokens[v] for v in walk.path]
        counts[node, walk.tokens[-1]] += 1
    assert counts[law == 0].sum() == 0, "sampled an outcome of probability 0"
    possible = law.reshape(-1) > 0
    observed, expected = counts.reshape(-1)[possible], law.reshape(-1)[possible] * DRAWS
    small = expected < 5
    if small.any():  # pool the cells expecting fewer than 5
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    assert observed.size >= 4, "the tree has too few outcomes to test"
    expected *= observed.sum() / expected.sum()
    assert scipy.stats.chisquare(observed, expected).pvalue > SIGNIFICANCE
