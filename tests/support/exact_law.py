"""Exact sequence laws of tiny models and a chi-square check of sampled sequences against them (shared by tests)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.stats
import torch

from multidraft.sampling_options import probabilities
from multidraft.shapes import parse_shape, shape_depth
from tests.support.models import VOCAB

SIGNIFICANCE = 1e-4


def sequence_law(target, prompt: torch.Tensor, length: int, **options) -> np.ndarray:
    """The target's exact law of its next ``length`` tokens, float64 [V ** length] (row-major in the tokens)."""
    law = np.ones(1)
    for depth in range(length):
        prefixes = torch.tensor(list(itertools.product(range(VOCAB), repeat=depth)), dtype=torch.int64)
        batch = torch.cat([prompt.reshape(1, -1).expand(VOCAB**depth, -1), prefixes.reshape(VOCAB**depth, depth)], 1)
        with torch.no_grad():
            p = probabilities(target(batch).logits[:, -1], **options).double().numpy()  # [V ** depth, V]
        law = (law[:, None] * p).reshape(-1)
    return law / law.sum()


def uncut(tree: str, length: int) -> int:
    """max_new_tokens for a law of the first ``length`` tokens that lets the first step draft the whole
    ``tree`` (the decoder cuts trees to the tokens still wanted); :func:`assert_law` reads the first ``length``."""
    return max(length, shape_depth(parse_shape(tree)) + 1)


def assert_law(samples: list[list[int]], law: np.ndarray) -> None:
    """Chi-square goodness of fit of token sequences to ``law``; cells expecting < 5 are pooled."""
    length = round(math.log(law.size, VOCAB))
    index = np.array([np.ravel_multi_index(s[:length], (VOCAB,) * length) for s in samples])
    counts = np.bincount(index, minlength=law.size)
    assert counts[law == 0].sum() == 0, "a sequence of probability 0 was generated"
    expected = law * len(samples)
    big = expected >= 5
    observed, expected = np.append(counts[big], counts[~big].sum()), np.append(expected[big], expected[~big].sum())
    if expected[-1] == 0:  # no small cells with positive probability to pool
        observed, expected = observed[:-1], expected[:-1]
    pvalue = scipy.stats.chisquare(observed, expected).pvalue
    assert pvalue > SIGNIFICANCE, f"chi-square p = {pvalue:.2e}"
