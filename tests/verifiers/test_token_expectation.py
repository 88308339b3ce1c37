"""The token walk's exact expected tokens per step, against the schemes' closed-form acceptance."""

from __future__ import annotations

import pytest
import torch

from multidraft import schemes, theory, verifiers
from multidraft.schemes.draft_laws import enumerate_law
from multidraft.tree import Tree
from tests.support.cases import pairs


@pytest.mark.parametrize("name", [n for n in schemes.names() if n != "otm"])
def test_one_level_average_is_one_plus_acceptance(name):
    """E over the draft law of E[a + 1 | drafts] at depth 1 is 1 + alpha (theory.acceptance)."""
    scheme, verifier = schemes.get(name), verifiers.get("token")
    for kind, p, q in pairs(27, seed=3, max_vocab=5):
        k = {"sps": 1, "spechub": 2}.get(name, 2)
        tuples, probs = enumerate_law(scheme.draft_law, q, k)
        mean = 0.0
        for drafts, prob in zip(tuples, probs):
            tree = Tree.from_root(0)
            tree.grow(torch.from_numpy(drafts).reshape(1, k))
            p_nodes = torch.from_numpy(p).expand(tree.size, -1)
            mean += prob * verifier.expected_tokens(tree, scheme, p_nodes, torch.from_numpy(q).reshape(1, -1))
        assert mean == pytest.approx(1 + theory.acceptance(name, p, q, k), abs=1e-12), kind


@pytest.mark.parametrize("name", [n for n in schemes.names() if n != "otm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_integrated_tokens_have_the_expected_tokens_mean(name, seed):
    """Over every tree a 2x2 (sps: 1x2) draft law grows, integrating each node's draws changes no mean (1e-12)."""
    from multidraft.verifiers.token import integrated_tokens
    from tests.support.oracle import drafted_trees, node_laws, table

    scheme, verifier = schemes.get(name), verifiers.get("token")
    shape = (1, 1) if name == "sps" else (2, 2)
    pairs_by_context = table(vocab=3, depth=2, seed=seed)
    integrated, given = [0.0, 0.0], [0.0, 0.0]
    for tree, contexts, prob in drafted_trees(pairs_by_context, scheme.draft_law, shape):
        p, q = node_laws(pairs_by_context, tree, contexts)
        for d, value in enumerate(integrated_tokens(tree, scheme, p, q)):
            integrated[d] += prob * value
        for d in range(tree.depth):
            cut = tree.truncated(d + 1)
            given[d] += prob * verifier.expected_tokens(cut, scheme, p[: cut.size], q[: cut.n_internal])
    assert integrated == pytest.approx(given, abs=1e-12)
    assert integrated[0] >= 1 and integrated[1] >= integrated[0]
