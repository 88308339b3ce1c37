"""Greedy multi-path block verification (verifiers.gbv): its path order, its law against traversal-seq's
(the greedy order is the traversal's post-order, docs in the module), and its refusals.

Exactness on whole trees is in ``test_oracle.py`` and the law through ``generate`` in
``test_verifiers_generate.py``, which cover every registered verifier or list ``gbv``.
"""

from __future__ import annotations

import pytest

from multidraft import schemes, verifiers
from multidraft.shapes import check_shape, parse_shape, shape_depth
from multidraft.verifiers.gbv import tree_paths
from tests.support.oracle import drafted_trees, node_laws, table


def test_paths_are_depth_first_with_repeats_as_paths_of_their_own():
    pairs = table(3, 2, seed=0)
    for tree, _, _ in drafted_trees(pairs, "iid", parse_shape("2,1")):
        drafts = tree.drafts_of(0).tolist()
        paths = tree_paths(tree)
        if drafts[0] == drafts[1]:  # the repeat's subtree is not drafted: a path of length one
            assert paths == [[(0, 0), (int(tree.children_of(0)[0]), 0)], [(0, 1)]]
        else:
            assert paths == [[(0, i), (int(tree.children_of(0)[i]), 0)] for i in range(2)]


@pytest.mark.parametrize("spec", ["2,2", "3,1", "2/1,0", "1,2,2", "2/0,2/1,1"])
@pytest.mark.parametrize("scheme", ["rrs", "rrs-wor", "spechub", "greedy", "topk"])
def test_same_law_as_traversal_seq_on_every_tree(spec, scheme):
    shape, law = parse_shape(spec), schemes.get(scheme)
    try:
        check_shape(shape, law)
    except ValueError:
        pytest.skip("the scheme does not draft this tree")
    pairs = table(3, shape_depth(shape), seed=4)
    for tree, contexts, _ in drafted_trees(pairs, law.draft_law, shape):
        p, q = node_laws(pairs, tree, contexts)
        ours = verifiers.get("gbv").outcomes(tree, law, p, q)
        theirs = verifiers.get("traversal-seq").outcomes(tree, law, p, q)
        key = lambda outcome: outcome.node  # noqa: E731
        assert sorted(o.node for o in ours) == sorted(o.node for o in theirs)
        for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key)):
            assert abs(a.probability - b.probability) <= 1e-12
            if a.probability > 0:
                assert (a.weights / a.weights.sum() - b.weights / b.weights.sum()).abs().max() <= 1e-12


def test_refuses_a_draft_law_without_a_sequential_form():
    gbv = verifiers.get("gbv")
    assert gbv.refusal(2, "wor") is None and gbv.refusal(1, "topk") is None
    joint = type("Joint", (), {"name": "joint", "draft_law": "joint"})()
    with pytest.raises(ValueError, match="verifier 'gbv' cannot verify scheme 'joint'"):
        gbv.check((2, 2), joint)
