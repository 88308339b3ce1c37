"""The batched sampling path draws from the exact law (chi-square tests, fixed seeds).

For each scheme and a few (p, q) pairs: the draft tuples drawn by
``sample_drafts`` against the enumerated draft law, and the joint
(accepted, token) counts of ``sample`` against the exact law computed from
the kernel.  Seeds are fixed, so pass/fail is deterministic; the
significance level 1e-4 makes a false alarm on a correct sampler unlikely
for any seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multidraft import schemes
from multidraft.schemes.draft_laws import enumerate_law
from tests.support.cases import near_certain
from tests.support.chi_square import SIGNIFICANCE, chi_square_pvalue

DRAWS = 200_000


def joint_law(name: str, p: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Exact P(accepted, token) as [2, V]: row 1 = the output is one of the drafts."""
    scheme = schemes.get(name)
    tuples, probs = enumerate_law(scheme.draft_law, q, k)
    n = len(tuples)
    kernel = scheme.kernel(torch.from_numpy(p).expand(n, -1), torch.from_numpy(q).expand(n, -1), torch.from_numpy(tuples)).numpy()
    member = np.zeros_like(kernel, dtype=bool)
    np.put_along_axis(member, tuples, True, axis=1)
    return np.stack([probs @ np.where(member, 0, kernel), probs @ np.where(member, kernel, 0)])


def settings():
    rng = np.random.default_rng(11)
    vocab = 5
    p, q = rng.dirichlet(np.ones(vocab)), rng.dirichlet(np.ones(vocab))
    sparse_p = np.array([0.0, 0.5, 0.3, 0.2, 0.0])
    sparse_q = np.array([0.6, 0.0, 0.3, 0.05, 0.05])
    peaked = near_certain(vocab, 2, rng)
    out = []
    for name in schemes.names():
        k_values = {"sps": [1], "spechub": [2], "otm": [2]}.get(name, [2, 3])
        for k in k_values:
            for label, pp, qq in (("dirichlet", p, q), ("sparse", sparse_p, sparse_q), ("peaked", p, peaked)):
                out.append(pytest.param(name, k, pp, qq, id=f"{name}-k{k}-{label}"))
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name,k,p,q", settings())
def test_sampling_path_matches_exact_law(name, k, p, q, dtype):
    scheme = schemes.get(name)
    draws = DRAWS if name != "otm" else DRAWS // 4
    generator = torch.Generator().manual_seed(1234 + k)
    p_t = torch.from_numpy(p).to(dtype).expand(draws, -1)
    q_t = torch.from_numpy(q).to(dtype).expand(draws, -1)
    sampled = scheme.sample(p_t, q_t, k, generator)

    tuples, probs = enumerate_law(scheme.draft_law, q, k)
    index = {tuple(t): n for n, t in enumerate(tuples.tolist())}
    drawn = [index.get(tuple(t), -1) for t in sampled.drafts.tolist()]
    assert min(drawn) >= 0, "a draft tuple outside the support of the draft law"
    assert chi_square_pvalue(np.bincount(drawn, minlength=len(tuples)), probs) > SIGNIFICANCE

    joint = joint_law(name, p, q, k)
    cells = sampled.accepted.long() * p.size + sampled.token
    observed = np.bincount(cells.numpy(), minlength=2 * p.size)
    assert observed[joint.reshape(-1) == 0].sum() == 0, "sampled an outcome of probability 0"
    assert chi_square_pvalue(observed, joint.reshape(-1)) > SIGNIFICANCE
