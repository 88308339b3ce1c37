"""traversal-ratio (verifiers.ordered): its sequential laws factor the draft set's law, and it keeps draft
order where it does not reorder.  Exactness on whole trees is in test_oracle.py (every registered verifier),
the law through ``generate`` in test_verifiers_generate.py and the sampler in test_verifiers_sampling.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from multidraft import schemes, verifiers
from multidraft.schemes.draft_laws import enumerate_law
from multidraft.shapes import parse_shape
from multidraft.verifiers.ordered import first_law, ratio_rank, second_law
from tests.support.oracle import drafted_trees, node_laws, table


@pytest.mark.parametrize("law", ["iid", "wor"])
def test_the_ordered_laws_factor_the_draft_sets_law(law):
    rng = np.random.default_rng(0)
    for vocab in (2, 3, 6):
        for _ in range(20):
            p, q = rng.dirichlet(np.ones(vocab)), rng.dirichlet(np.full(vocab, 0.5))
            q[rng.integers(vocab)] = 0 if vocab > 2 else q[0]
            q /= q.sum()
            tuples, probs = enumerate_law(law, q, 2)
            sets: dict[frozenset, float] = {}
            for pair, prob in zip(tuples.tolist(), probs):
                sets[frozenset(pair)] = sets.get(frozenset(pair), 0.0) + prob
            q64, p64 = torch.from_numpy(q), torch.from_numpy(p)
            rank = ratio_rank(p64, q64)
            first = first_law(law, q64, rank)
            assert abs(float(first.sum()) - 1) <= 1e-12
            for b in range(vocab):
                if first[b] == 0:
                    continue
                second = second_law(law, q64, rank, first, b)
                for a in range(vocab):
                    pair = frozenset((a, b))
                    expected = sets.get(pair, 0.0) if (a == b or rank[a] < rank[b]) else 0.0
                    assert abs(float(first[b] * second[a]) - expected) <= 1e-12, (vocab, a, b)


def test_draft_order_where_nothing_is_reordered():
    """One draft per node, three drafts, or a law other than iid / wor: the same law as traversal-seq."""
    for scheme, spec in [("rrs", "1,1"), ("rrs", "3"), ("spechub", "2"), ("greedy", "2,1"), ("topk", "2")]:
        shape = parse_shape(spec)
        pairs = table(3, len(shape), seed=1)
        law = schemes.get(scheme)
        for tree, contexts, _ in itertools.islice(drafted_trees(pairs, law.draft_law, shape), 50):
            p, q = node_laws(pairs, tree, contexts)
            ours = verifiers.get("traversal-ratio").outcomes(tree, law, p, q)
            theirs = verifiers.get("traversal-seq").outcomes(tree, law, p, q)
            assert [(o.node, o.probability) for o in ours] == [(o.node, o.probability) for o in theirs]
