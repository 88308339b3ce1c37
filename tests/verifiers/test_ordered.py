"""traversal-ratio (verifiers.ordered): its sequential laws factor the draft law in its order, and it keeps
draft order where it does not reorder.  Exactness on whole trees is in test_oracle.py (every registered verifier),
the law through ``generate`` in test_verifiers_generate.py and the sampler in test_verifiers_sampling.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from multidraft import schemes, verifiers
from multidraft.schemes.draft_laws import enumerate_law
from multidraft.shapes import parse_shape
from multidraft.verifiers.ordered import first_law, second_law
from tests.support.oracle import drafted_trees, node_laws, table


@pytest.mark.parametrize("law", ["iid", "wor"])
def test_the_ordered_laws_factor_the_draft_law(law):
    """q_1(b) q_2(a | b) = P(b verified first, a second), from the enumerated draft law: a draft with p >= q
    goes before one with p < q, otherwise draft order."""
    rng = np.random.default_rng(0)
    for vocab in (2, 3, 6):
        for _ in range(20):
            p, q = rng.dirichlet(np.ones(vocab)), rng.dirichlet(np.full(vocab, 0.5))
            if vocab > 2:
                q[rng.integers(vocab)] = 0
                q /= q.sum()
            wanted = p >= q
            ordered: dict[tuple[int, int], float] = {}
            for (x1, x2), prob in zip(enumerate_law(law, q, 2)[0].tolist(), enumerate_law(law, q, 2)[1]):
                key = (x2, x1) if (not wanted[x1] and wanted[x2]) else (x1, x2)
                ordered[key] = ordered.get(key, 0.0) + prob
            q64, mask = torch.from_numpy(q), torch.from_numpy(wanted)
            first = first_law(law, q64, mask)
            assert abs(float(first.sum()) - 1) <= 1e-12
            for b in range(vocab):
                second = second_law(law, q64, mask, first, b) if first[b] > 0 else torch.zeros(vocab)
                for a in range(vocab):
                    assert abs(float(first[b] * second[a]) - ordered.get((b, a), 0.0)) <= 1e-12, (vocab, a, b)


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
