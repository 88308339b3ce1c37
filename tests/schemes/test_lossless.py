"""Every scheme is exactly lossless, and its closed-form acceptance is exact (DESIGN §1.2).

For each (p, q) the draft law is enumerated, the scheme's kernel is applied
to every tuple in float64, and sum_x Q(x) pi(. | x) must equal p to 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest

from multidraft import schemes
from multidraft.theory import acceptance, acceptance_by_enumeration, optimal_acceptance, output_law
from tests.support.cases import pairs

TOLERANCE = 1e-12
CASES = pairs(540, seed=2024)


def ks(name: str, vocab: int) -> list[int]:
    if name == "sps":
        return [1]
    if name == "spechub":
        return [2]
    if name == "greedy":
        return list(range(1, min(4, vocab) + 1))
    return [1, 2, 3, 4]


@pytest.mark.parametrize("name", [n for n in schemes.names() if n != "otm"])
def test_output_law_is_p_and_acceptance_is_exact(name):
    checked = 0
    for index, (kind, p, q) in enumerate(CASES):
        for k in ks(name, p.size):
            law = output_law(name, p, q, k)
            assert np.abs(law - p).max() <= TOLERANCE, (index, kind, k, law, p)
            exact = acceptance_by_enumeration(name, p, q, k)
            closed = acceptance(name, p, q, k)
            assert abs(closed - exact) <= TOLERANCE, (index, kind, k, closed, exact)
            checked += 1
    assert checked >= 500


@pytest.mark.parametrize("name", [n for n in schemes.names() if n != "otm"])
def test_acceptance_never_exceeds_the_optimum_of_its_draft_law(name):
    scheme = schemes.get(name)
    for index, (kind, p, q) in enumerate(CASES[:200]):
        for k in ks(name, p.size):
            alpha = acceptance(name, p, q, k)
            best = optimal_acceptance(scheme.draft_law, p, q, k)
            assert alpha <= best + 1e-12, (index, kind, k, alpha, best)
            if name in ("spechub", "greedy", "sps"):
                assert alpha == pytest.approx(best, abs=1e-12), (index, kind, k)


def test_otm_is_lossless_and_optimal():
    for index, (kind, p, q) in enumerate(pairs(54, seed=7, max_vocab=5)):
        for k in (1, 2, 3):
            assert np.abs(output_law("otm", p, q, k) - p).max() <= TOLERANCE, (index, kind, k)
            assert acceptance("otm", p, q, k) == pytest.approx(optimal_acceptance("iid", p, q, k), abs=1e-8)


def test_spechub_beats_iid_optimal_transport_when_the_hub_is_likely():
    """SpecHub's theorem: q(a) > 1/2 implies alpha(spechub) >= alpha*(iid, k = 2)."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        vocab = int(rng.integers(3, 9))
        q = rng.dirichlet(np.ones(vocab - 1)) * rng.uniform(0, 0.5)
        q = np.insert(q, 0, 1 - q.sum())
        p = rng.dirichlet(np.ones(vocab))
        assert acceptance("spechub", p, q, 2) >= optimal_acceptance("iid", p, q, 2) - 1e-12
