"""Exact analysis by enumeration of the draft law (small V), and a Monte-Carlo estimate.

For a scheme with draft law Q and kernel pi (DESIGN §1):

* output law:   P(y) = sum_x Q(x) pi(y | x)            (lossless iff P = p)
* acceptance:   alpha = sum_x Q(x) pi({x_1..x_k} | x)

Both are computed in float64 by running the scheme's own verification law
on every support tuple at once (one batched call), so they test exactly the
code the sampler uses.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from multidraft import schemes
from multidraft.schemes.draft_laws import enumerate_law
from multidraft.validation import as_pair


def _kernel_table(scheme_name: str, p, q, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tuples [N, k], Q [N], pi [N, V]) for every tuple in the support of the scheme's draft law."""
    scheme = schemes.get(scheme_name)
    p, q = as_pair(p, q)
    scheme.check_k(k)
    tuples, probs = enumerate_law(scheme.draft_law, q, k)
    n = len(tuples)
    kernel = scheme.kernel(
        torch.from_numpy(p).expand(n, -1), torch.from_numpy(q).expand(n, -1), torch.from_numpy(tuples)
    )
    return tuples, probs, kernel.numpy()


def output_law(scheme_name: str, p, q, k: int) -> np.ndarray:
    """The exact law of the output token [V], sum_x Q(x) pi(. | x); equals p for a lossless scheme."""
    _, probs, kernel = _kernel_table(scheme_name, p, q, k)
    return probs @ kernel


def acceptance_by_enumeration(scheme_name: str, p, q, k: int) -> float:
    """The exact acceptance rate sum_x Q(x) pi({x_1..x_k} | x), by enumeration."""
    tuples, probs, kernel = _kernel_table(scheme_name, p, q, k)
    member = np.zeros_like(kernel, dtype=bool)
    np.put_along_axis(member, tuples, True, axis=1)
    return float(probs @ np.where(member, kernel, 0).sum(1))


def acceptance_mc(scheme_name: str, p, q, k: int, n: int, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo acceptance rate from ``n`` runs of the sampling path: (mean, standard error)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    scheme = schemes.get(scheme_name)
    p, q = as_pair(p, q)
    generator = torch.Generator().manual_seed(seed)
    p_t, q_t = torch.from_numpy(p).expand(n, -1), torch.from_numpy(q).expand(n, -1)
    accepted = scheme.sample(p_t, q_t, k, generator).accepted.double()
    mean = float(accepted.mean())
    return mean, math.sqrt(max(mean * (1 - mean), 0.0) / (n - 1))
