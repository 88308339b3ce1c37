"""The token walk's exact expected tokens per step, against the schemes' closed-form acceptance."""

from __future__ import annotations

import pytest
import torch

from cases import pairs
from multidraft import schemes, theory, verifiers
from multidraft.theory.draft_laws import enumerate_law
from multidraft.tree import Tree


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
