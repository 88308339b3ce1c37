"""Pearson's chi-square test as the sampling tests use it (fixed seeds, a small significance: deterministic)."""

from __future__ import annotations

import numpy as np
import scipy.stats

#: Significance of every chi-square test in the suite.
SIGNIFICANCE = 1e-4


def chi_square_pvalue(observed: np.ndarray, expected_probs: np.ndarray) -> float:
    """Pearson's test; impossible cells are dropped, cells with expected count < 5 pooled into one."""
    possible = expected_probs > 0
    observed, expected = observed[possible], expected_probs[possible] * observed.sum()
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    if observed.size < 2:
        return 1.0
    expected *= observed.sum() / expected.sum()
    return float(scipy.stats.chisquare(observed, expected).pvalue)
