"""Intervals for the benchmark tables: a bootstrap over prompts, with steps clustered by prompt.

Steps of one prompt share its context, so they are not independent draws;
every interval here resamples **prompts** (clusters) with replacement and
recomputes the pooled statistic.  Paired comparisons resample the same
prompts for both configurations, so the prompt effect cancels.  With fewer
than :data:`MIN_PROMPTS` prompts no interval is given (``None``; tables print
"n too small"): a bootstrap over a handful of clusters understates the spread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Fewest prompts an interval is computed from.
MIN_PROMPTS = 8
BOOTSTRAP_RESAMPLES = 4000
LEVEL = 0.95


def _resampled_prompts(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))  # [B, n] prompt indices


def _interval(values: np.ndarray) -> list[float]:
    low, high = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return [float(low), float(high)]


def ratio_interval(numerators: Sequence[float], denominators: Sequence[float], seed: int = 0) -> list[float] | None:
    """95% interval of sum(num) / sum(den) over prompts (e.g. tokens / steps, tokens / seconds)."""
    num, den = np.asarray(numerators, float), np.asarray(denominators, float)
    if len(num) < MIN_PROMPTS:
        return None
    picks = _resampled_prompts(len(num), seed)
    return _interval(num[picks].sum(1) / den[picks].sum(1))


def paired_ratio_difference(
    a: tuple[Sequence[float], Sequence[float]], b: tuple[Sequence[float], Sequence[float]], seed: int = 0
) -> tuple[float, list[float] | None]:
    """sum(a_num)/sum(a_den) - sum(b_num)/sum(b_den) over the same prompts, with its paired 95% interval."""
    a_num, a_den = (np.asarray(x, float) for x in a)
    b_num, b_den = (np.asarray(x, float) for x in b)
    estimate = float(a_num.sum() / a_den.sum() - b_num.sum() / b_den.sum())
    if len(a_num) < MIN_PROMPTS:
        return estimate, None
    picks = _resampled_prompts(len(a_num), seed)
    deltas = a_num[picks].sum(1) / a_den[picks].sum(1) - b_num[picks].sum(1) / b_den[picks].sum(1)
    return estimate, _interval(deltas)


def paired_ratio_quotient(
    a: tuple[Sequence[float], Sequence[float]], b: tuple[Sequence[float], Sequence[float]], seed: int = 0
) -> tuple[float, list[float] | None]:
    """(sum(a_num)/sum(a_den)) / (sum(b_num)/sum(b_den)) over the same prompts (e.g. a speedup), paired 95% interval."""
    a_num, a_den = (np.asarray(x, float) for x in a)
    b_num, b_den = (np.asarray(x, float) for x in b)
    estimate = float((a_num.sum() / a_den.sum()) / (b_num.sum() / b_den.sum()))
    if len(a_num) < MIN_PROMPTS:
        return estimate, None
    picks = _resampled_prompts(len(a_num), seed)
    quotients = (a_num[picks].sum(1) / a_den[picks].sum(1)) / (b_num[picks].sum(1) / b_den[picks].sum(1))
    return estimate, _interval(quotients)


def format_interval(interval: list[float] | None, signed: bool = False) -> str:
    """``[low, high]`` to 3 decimals, or "n too small"."""
    if interval is None:
        return f"n too small (< {MIN_PROMPTS} prompts)"
    spec = "{:+.3f}" if signed else "{:.3f}"
    return "[" + spec.format(interval[0]) + ", " + spec.format(interval[1]) + "]"
