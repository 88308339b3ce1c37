"""The draft-law samplers of ``multidraft.schemes.draws`` on the hard cases.

Chi-square tests (fixed seeds, significance 1e-4, as in test_sampling.py)
of each sampler against the enumerated law, over q's that stress the
block-sum sampler: support smaller than k, exact zeros, ties, a near-certain
token (q(a) = 1 - 1e-12, which rounds to 1 in float32), vocabularies below,
at and past a multiple of the block size.  Then deterministic checks: no
zero-mass token is ever drawn, and ``top_tokens`` equals the lexicographic
order (q descending, index ascending) on tie-heavy rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multidraft.schemes import draws
from multidraft.schemes.base import BLOCK
from multidraft.schemes.draft_laws import enumerate_law, greedy_fixed_tokens
from tests.support.cases import near_certain
from tests.support.chi_square import SIGNIFICANCE, chi_square_pvalue

DRAWS = 200_000
CHUNK = 25_000  # rows per call, so that a [CHUNK, V] copy stays small for V = 300

SAMPLERS = {"iid": draws.iid, "wor": draws.without_replacement, "hub": draws.hub, "greedy": draws.greedy}


def spread(vocab: int, tokens: list[int], masses: list[float]) -> np.ndarray:
    """A q over ``vocab`` tokens with the given masses at ``tokens`` and exact zeros elsewhere."""
    q = np.zeros(vocab)
    q[tokens] = masses
    return q / q.sum()


def settings():
    """(law, k, q) triples; test_sampling.py already covers V = 5 with zeros and a near-certain token."""
    rng = np.random.default_rng(5)
    across = [0, 5, BLOCK - 1, BLOCK, 200, 2 * BLOCK, 299]  # several blocks and the short last one of V = 300
    heavy = near_certain(len(across), 3, rng)  # the near-certain token shares block 1 with token 200
    cases = (
        ("support2", np.array([0.0, 0.7, 0.0, 0.3, 0.0]), (("iid", 2), ("wor", 3), ("wor", 4), ("hub", 2), ("greedy", 4))),
        ("ties", np.array([0.25, 0.125, 0.25, 0.125, 0.25]), (("hub", 2), ("greedy", 3))),
        ("V300", spread(300, across, list(rng.dirichlet(np.ones(len(across))))), (("iid", 2), ("wor", 3), ("wor", 8), ("hub", 2), ("greedy", 1), ("greedy", 3))),
        ("V300-near-one-hot", spread(300, across, list(heavy)), (("wor", 3), ("hub", 2), ("greedy", 3))),
        ("V256-ties", spread(2 * BLOCK, [3, BLOCK - 1, BLOCK, 2 * BLOCK - 1], [0.3, 0.2, 0.3, 0.2]), (("hub", 2), ("greedy", 3))),
    )
    return [pytest.param(law, k, q, id=f"{law}-k{k}-{label}") for label, q, laws in cases for law, k in laws]


def sample(law: str, q: np.ndarray, k: int, dtype: torch.dtype, seed: int) -> np.ndarray:
    """DRAWS draft tuples [DRAWS, k] from one q, in chunks of CHUNK rows."""
    generator = torch.Generator().manual_seed(seed)
    q_t = torch.from_numpy(q).to(dtype).expand(CHUNK, -1)
    return np.concatenate([SAMPLERS[law](q_t, k, generator).numpy() for _ in range(DRAWS // CHUNK)])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("law,k,q", settings())
def test_draft_sampler_matches_the_enumerated_law(law, k, q, dtype):
    tuples, probs = enumerate_law(law, q, k)
    code = q.size ** np.arange(k)  # a tuple's number in base V
    order = np.argsort(tuples @ code)
    drawn = sample(law, q, k, dtype, seed=77 + k) @ code
    found = np.searchsorted((tuples @ code)[order], drawn).clip(max=len(tuples) - 1)
    assert np.array_equal((tuples @ code)[order][found], drawn), "a draft tuple outside the support of the draft law"
    assert chi_square_pvalue(np.bincount(order[found], minlength=len(tuples)), probs) > SIGNIFICANCE


def zero_heavy_rows(rows: int, vocab: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Rows of q with ~90% exact zeros; a quarter hold one token of mass ~1 - 2^-20 whose block is otherwise empty."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.rand(rows, vocab, generator=generator, dtype=torch.float64) ** 8
    q = torch.where(torch.rand(rows, vocab, generator=generator, dtype=torch.float64) < 0.9, 0, q)
    q[:, 0] = 1e-3  # at least one token with mass per row
    peaked = torch.arange(rows) % 4 == 0
    big = torch.randint(vocab, (rows,), generator=generator)
    block = torch.arange(vocab) // BLOCK
    q[peaked] = torch.where(block == (big[peaked] // BLOCK).unsqueeze(-1), 0, q[peaked] * 2**-20 / q[peaked].sum(-1, keepdim=True))
    q[peaked, big[peaked]] = 1 - 2**-20
    return (q / q.sum(-1, keepdim=True)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("vocab", [100, 1000])
def test_no_zero_mass_token_is_drawn(vocab, dtype):
    q = zero_heavy_rows(4000, vocab, dtype, seed=3)  # [n, V]
    support = (q > 0).sum(-1)  # [n]
    generator = torch.Generator().manual_seed(9)
    for law, k in (("iid", 8), ("wor", 8), ("hub", 2)):
        drafts = SAMPLERS[law](q, k, generator)
        assert (q.gather(-1, drafts) > 0).all(), law
    drafts = draws.without_replacement(q, 8, generator)  # [n, 8]
    distinct = (drafts.sort(-1).values.diff(dim=-1) != 0).sum(-1) + 1
    assert torch.equal(distinct, support.clamp(max=8)), "draws without replacement repeat only after the support"
    repeats = torch.arange(8) >= support.unsqueeze(-1)  # [n, 8]
    assert torch.equal(torch.where(repeats, drafts[:, :1], drafts), drafts), "missing drafts repeat x_1"
    drafts = draws.greedy(q, 4, generator)
    last, free = drafts[:, -1], support > 3
    assert (q.gather(-1, last.unsqueeze(-1)).squeeze(-1)[free] > 0).all()
    assert not (drafts[free, :-1] == last[free].unsqueeze(-1)).any(), "the last greedy draft is off T"
    assert torch.equal(last[~free], drafts[~free, 0]), "with nothing off T the last draft repeats x_1"


@pytest.mark.parametrize("vocab", [5, BLOCK - 1, BLOCK, 300, 1000])
def test_top_tokens_break_ties_by_lower_index(vocab):
    rng = np.random.default_rng(vocab)
    rows = rng.choice([0.0, 1.0, 2.0, 3.0], size=(64, vocab), p=[0.7, 0.2, 0.08, 0.02])
    rows[:8] = 0  # one-hot rows: the rest of T are the lowest-indexed zeros
    rows[np.arange(64), rng.integers(vocab, size=64)] = 1
    rows = rows / rows.sum(-1, keepdims=True)
    for count in (c for c in (1, 3, 7) if c < vocab):
        expected = np.stack([greedy_fixed_tokens(row, count + 1) for row in rows])
        for dtype in (torch.float32, torch.float64):
            assert np.array_equal(draws.top_tokens(torch.from_numpy(rows).to(dtype), count).numpy(), expected)


def test_batch_shape_is_kept():
    q = torch.softmax(torch.randn(2, 3, 300, generator=torch.Generator().manual_seed(0)), -1)
    for law, k in (("iid", 3), ("wor", 3), ("hub", 2), ("greedy", 3)):
        assert SAMPLERS[law](q, k, torch.Generator().manual_seed(1)).shape == (2, 3, k)
