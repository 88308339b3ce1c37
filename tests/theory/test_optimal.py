"""alpha*(Q, p) without an LP (theory.optimal) against the LP and against brute force.

Ground truth on small V: the draft law enumerated by ``enumerate_law`` and
alpha* = min over all 2^V token sets H of [Q(not all drafts ∈ H) + p(H)]
(DESIGN §1).  The exponential-race integral behind ``wor`` is also checked
prefix by prefix against an exact subset dynamic programme up to k = 8.
"""

from __future__ import annotations

import numpy as np
import pytest

from multidraft.schemes.draft_laws import enumerate_law
from multidraft.theory.lp import optimal_acceptance_lp, optimal_coupling
from multidraft.theory.optimal import _prefix_sums, _wor_miss, _wor_pair_miss, optimal_acceptance
from tests.support.cases import near_certain, pairs

LAWS = ("iid", "wor", "hub", "greedy")


def _raw_sparse(count: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Dirichlet(0.1) draws kept as they are: masses down to ~1e-30, plus near-certain q."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(count):
        vocab = int(rng.integers(3, 9))
        p, q = rng.dirichlet(np.full(vocab, 0.1)), rng.dirichlet(np.full(vocab, 0.1))
        if n % 3 == 0:
            q = near_certain(vocab, int(rng.integers(vocab)), rng)
        out.append(("raw-sparse", p, q))
    return out


CASES = pairs(270, seed=20250218, max_vocab=8) + _raw_sparse(60, seed=7)


def _k_for(law: str, index: int, vocab: int) -> int:
    if law == "hub":
        return 2
    k = 1 + index % 4
    return min(k, vocab) if law == "greedy" else k


def brute_force(law: str, p: np.ndarray, q: np.ndarray, k: int) -> float:
    """min over all H ⊆ V of Q(not all drafts ∈ H) + p(H), from the enumerated law."""
    tuples, probs = enumerate_law(law, q, k)
    vocab = p.size
    draft_sets = np.bitwise_or.reduce(np.left_shift(1, tuples), axis=1)  # [N] bit masks
    sets = np.arange(1 << vocab)  # [2^V] every H as a bit mask
    members = (sets[:, None] >> np.arange(vocab)) & 1  # [2^V, V]
    missed = (draft_sets[None, :] & ~sets[:, None]) != 0  # [2^V, N]: some draft outside H
    return float(np.min(missed.astype(float) @ probs + members @ p))


@pytest.mark.parametrize("law", LAWS)
def test_matches_lp_and_brute_force(law):
    worst_lp = worst_brute = 0.0
    for index, (kind, p, q) in enumerate(CASES):
        k = _k_for(law, index, p.size)
        value = optimal_acceptance(law, p, q, k)
        assert 0.0 <= value <= 1.0
        worst_lp = max(worst_lp, abs(value - optimal_acceptance_lp(law, p, q, k)))
        worst_brute = max(worst_brute, abs(value - brute_force(law, p, q, k)))
        assert worst_lp < 1e-9, (kind, p, q, k)
        assert worst_brute < 1e-12, (kind, p, q, k)


def _wor_miss_exact(q: np.ndarray, k: int) -> np.ndarray:
    """1 - Q_wor(first k draws ∈ H_n) for the prefixes H_n of q's order, by a DP over drawn sets.

    P(S) = P(the first |S| draws are the set S) = sum_{y ∈ S} P(S - y) q_y / q(V - (S - y)),
    the remaining mass being a sum of the remaining entries.
    """
    vocab = q.size
    masks = np.arange(1 << vocab)
    members = (masks[:, None] >> np.arange(vocab)) & 1  # [2^V, V]
    remaining = (1 - members) @ q  # q of the complement, a sum of entries
    size = members.sum(axis=1)
    first = np.zeros(1 << vocab)
    first[0] = 1.0
    for mask in masks[(size >= 1) & (size <= k)]:
        for y in np.flatnonzero(members[mask] & (q > 0)):
            before = mask ^ (1 << y)
            first[mask] += first[before] * q[y] / remaining[before]
    highest = np.array([int(m).bit_length() for m in masks])  # S ⊆ H_n iff n >= highest bit + 1
    miss = np.zeros(vocab + 1)
    for mask in masks[size == k]:
        miss[: highest[mask]] += first[mask]
    return miss


def test_race_integral_prefix_by_prefix():
    """Every prefix value of the wor integral, k up to 8, to 1e-13 (rounding level); k = 2 closed form too."""
    rng = np.random.default_rng(11)
    for trial in range(60):
        vocab = int(rng.integers(4, 11))
        k = int(rng.integers(2, min(vocab, 8) + 1))
        if trial % 3 == 0:
            q = rng.dirichlet(np.ones(vocab))
        elif trial % 3 == 1:
            q = rng.dirichlet(np.full(vocab, 0.1))
        else:
            q = near_certain(vocab, int(rng.integers(vocab)), rng)
        if np.count_nonzero(q) < k:
            continue
        q = q[rng.permutation(vocab)]
        complement = _prefix_sums(q[::-1])[::-1]
        exact = _wor_miss_exact(q, k)
        np.testing.assert_allclose(_wor_miss(q, complement, k), exact, rtol=0, atol=1e-13)
        if k == 2:
            np.testing.assert_allclose(_wor_pair_miss(q, complement), exact, rtol=0, atol=1e-15)


def test_without_replacement_dominates_iid():
    """Hu et al.: alpha*(wor) >= alpha*(iid) on the same p, q."""
    for index, (_, p, q) in enumerate(CASES):
        k = 1 + index % 4
        assert optimal_acceptance("iid", p, q, k) <= optimal_acceptance("wor", p, q, k) + 1e-12


def test_one_draft_is_one_minus_total_variation():
    for _, p, q in CASES[:60]:
        overlap = np.minimum(p, q).sum()
        for law in ("iid", "wor", "greedy"):
            assert optimal_acceptance(law, p, q, 1) == pytest.approx(overlap, abs=1e-15)


def test_hub_and_greedy_share_their_draft_sets_at_two_drafts():
    for _, p, q in CASES[:60]:
        assert optimal_acceptance("hub", p, q, 2) == pytest.approx(optimal_acceptance("greedy", p, q, 2), abs=1e-15)


def test_support_smaller_than_k_pads_the_drafts():
    p = np.array([0.2, 0.3, 0.5, 0.0])
    q = np.array([0.6, 0.0, 0.4, 0.0])
    assert optimal_acceptance("wor", p, q, 3) == pytest.approx(0.7, abs=1e-15)  # drafts = supp q = {0, 2}
    assert optimal_acceptance("wor", p, q, 3) == pytest.approx(optimal_acceptance_lp("wor", p, q, 3), abs=1e-9)


def test_large_vocabulary_is_consistent():
    rng = np.random.default_rng(3)
    logits = 3.0 * rng.standard_normal((2, 5000))
    p, q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    previous = {"iid": 0.0, "wor": 0.0}
    for k in (1, 2, 4, 8):
        iid, wor = optimal_acceptance("iid", p, q, k), optimal_acceptance("wor", p, q, k)
        assert previous["iid"] <= iid <= wor <= 1.0 and previous["wor"] <= wor  # more drafts never hurt
        previous = {"iid": iid, "wor": wor}


def test_coupling_has_the_right_marginals():
    for law, (_, p, q) in zip(LAWS * 10, CASES[:40]):
        k = 2 if law == "hub" else min(3, p.size)
        tuples, probs = enumerate_law(law, q, k)
        alpha, coupling = optimal_coupling(tuples, probs, p)
        assert coupling.shape == (probs.size, p.size) and coupling.min() >= 0.0
        np.testing.assert_allclose(coupling.sum(axis=1), probs, rtol=0, atol=1e-13)
        np.testing.assert_allclose(coupling.sum(axis=0), p, rtol=0, atol=1e-13)
        accepted = sum(coupling[x, list(set(row))].sum() for x, row in enumerate(tuples.tolist()))
        assert accepted == pytest.approx(alpha, abs=1e-14)
        assert alpha == pytest.approx(optimal_acceptance(law, p, q, k), abs=1e-9)


@pytest.mark.parametrize(
    ("law", "p", "q", "k"),
    [
        ("otm", [0.5, 0.5], [0.5, 0.5], 2),  # unknown law
        ("iid", [0.5, 0.5], [0.5, 0.5], 0),  # k < 1
        ("hub", [0.5, 0.5], [0.5, 0.5], 3),  # hub needs k = 2
        ("greedy", [0.5, 0.5], [0.5, 0.5], 3),  # greedy needs k <= V
        ("iid", [0.5, 0.5], [0.2, 0.3, 0.5], 2),  # mismatched lengths
        ("wor", [1.5, -0.5], [0.5, 0.5], 2),  # negative entry
        ("wor", [0.5, 0.6], [0.5, 0.5], 2),  # p does not sum to 1
        ("iid", [0.5, 0.5], [0.4, 0.4], 2),  # q does not sum to 1
    ],
)
def test_bad_input_raises(law, p, q, k):
    with pytest.raises(ValueError):
        optimal_acceptance(law, p, q, k)
    with pytest.raises(ValueError):
        optimal_acceptance_lp(law, p, q, k)


def test_unknown_law_names_the_valid_ones():
    with pytest.raises(ValueError, match="iid.*wor.*hub.*greedy"):
        optimal_acceptance("otm", [1.0], [1.0], 1)


def test_lp_refuses_a_large_law():
    q = np.full(64, 1 / 64)
    with pytest.raises(ValueError, match="too large"):
        optimal_acceptance_lp("iid", q, q, 4)
