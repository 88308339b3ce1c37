"""Bad input is a clear ValueError naming the problem, never a wrong number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multidraft import schemes
from multidraft.theory import acceptance, optimal_acceptance, output_law

P = np.array([0.5, 0.3, 0.2])
Q = np.array([0.6, 0.3, 0.1])


@pytest.mark.parametrize(
    "p,q,message",
    [
        (P, Q[:2] / Q[:2].sum(), "same length"),
        (np.array([0.5, 0.6, -0.1]), Q, "negative"),
        (np.array([0.5, np.nan, 0.5]), Q, "NaN"),
        (np.array([0.5, 0.3, 0.3]), Q, "sum to 1"),
        (P, np.array([0.6, 0.3, 0.1]) * 0.9, "sum to 1"),
        (P.reshape(1, 3), Q, "1-D"),
    ],
)
def test_theory_rejects_bad_distributions(p, q, message):
    with pytest.raises(ValueError, match=message):
        acceptance("rrs", p, q, 2)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: acceptance("rrs", P, Q, 0), "at least 1"),
        (lambda: acceptance("spechub", P, Q, 3), "k = 2"),
        (lambda: acceptance("sps", P, Q, 2), "k = 1"),
        (lambda: acceptance("nope", P, Q, 2), "unknown scheme"),
        (lambda: optimal_acceptance("nope", P, Q, 2), "unknown"),
        (lambda: output_law("greedy", P, Q, 4), "k <= V"),
        (lambda: acceptance("rrs", P, Q, 2.0), "integer"),
    ],
)
def test_theory_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_schemes_reject_bad_tensors():
    scheme = schemes.get("rrs")
    p = torch.tensor([[0.5, 0.3, 0.2]])
    with pytest.raises(ValueError, match="same shape"):
        scheme.sample(p, torch.tensor([[0.5, 0.5]]), 2)
    with pytest.raises(ValueError, match="sum to 1"):
        scheme.sample(p, torch.tensor([[0.5, 0.3, 0.3]]), 2)
    with pytest.raises(ValueError, match="dtype"):
        scheme.sample(p, p.double(), 2)
    with pytest.raises(ValueError, match="floating"):
        scheme.sample(torch.tensor([[1, 0, 0]]), p, 2)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        scheme.verify(p, p, torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match="batch shape"):
        scheme.verify(p, p, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown scheme"):
        schemes.get("specthub")
