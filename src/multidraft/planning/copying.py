"""What a chain of drafts copied from the text is predicted to yield, from what the generation has seen.

A copied chain c_1..c_d (:mod:`multidraft.lookup`) is verified by the token walk with a point-mass
draft law, so c_i is accepted, once c_1..c_{i-1} were, with probability a_i = p(c_i | text, c_<i),
and a step emits E = 1 + sum_{k=1..d} prod_{i<=k} a_i tokens on average.  The model: a copy that
starts afresh is accepted with probability alpha_m, where m is the length of the n-gram it was found
by (a longer match copies better), and one that goes on (the text's last token was the copy's) with
probability beta, so a chain that starts afresh yields

    E(d) = 1 + alpha_m (1 + beta + ... + beta^(d-1)),

and one that goes on the same with beta in place of alpha_m.

**Evidence**, exact chances rather than sampled outcomes: every emitted token t_j was drawn from (or
verified against) the target's law p_j at its position, which the step computed; the text before
j gives the copy c(j) that a chain started at j would have proposed first, so a(j) = p_j(c(j)) is
the chance it would have been accepted.  It counts for beta if the token before, t_{j-1}, was the
copy proposed there, c(j-1) (the text was copying), else for alpha_m.  So both are learnt from every
token, whatever its step ran: the model's drafts, plain decoding or a copy.  Priors: Beta laws with
means :data:`FIRST_PRIOR` and :data:`ONWARD_PRIOR`, each worth :data:`PRIOR_WEIGHT` observations,
updated by the chances as fractional successes (the last :data:`WINDOW` of each kind, since a text's
kind can change).  Where a margin is wanted, the first acceptance is read at a lower quantile of its
Beta posterior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from multidraft.lookup import LONGEST_MATCH

#: Prior mean of a copy's first-token acceptance.
FIRST_PRIOR = 0.3
#: Prior mean of the acceptance of a copied token once the ones before it were accepted.
ONWARD_PRIOR = 0.8
#: Weight of each prior, in observations.
PRIOR_WEIGHT = 2.0
#: First-token acceptances kept per match length (the most recent).
WINDOW = 48


@dataclass
class CopyEvidence:
    """The chances seen so far (module docstring)."""

    first: dict[int, list[float]] = field(default_factory=lambda: {m: [] for m in range(1, LONGEST_MATCH + 1)})
    onward: list[float] = field(default_factory=list)

    def add(self, matched: int, chance: float, going_on: bool) -> None:
        """a(j) = p_j(c(j)) of a copy found by an n-gram of ``matched`` tokens, ``going_on`` if the text was copying."""
        (self.onward if going_on else self.first[matched]).append(min(max(chance, 0.0), 1.0))

    def first_rate(self, matched: int, level: float | None = None, going_on: bool = False) -> float:
        """alpha_m (beta if ``going_on``): its posterior mean, or its Beta posterior's ``level`` quantile."""
        seen = (self.onward if going_on else self.first[matched])[-WINDOW:]
        prior = ONWARD_PRIOR if going_on else FIRST_PRIOR
        a = prior * PRIOR_WEIGHT + sum(seen)
        b = (1.0 - prior) * PRIOR_WEIGHT + len(seen) - sum(seen)
        return a / (a + b) if level is None else float(scipy.stats.beta.ppf(level, a, b))

    def tokens(
        self, matched: int, depths: np.ndarray, level: float | None = None, going_on: bool = False
    ) -> np.ndarray:
        """E tokens per step [len(depths)] of copied chains of ``depths`` drafts found by ``matched``-token n-grams,
        starting afresh or ``going_on``; the first acceptance at its ``level`` quantile if given."""
        beta = self.first_rate(matched, going_on=True)
        geometric = np.cumsum(beta ** np.arange(int(np.max(depths))))  # 1, 1 + beta, ...
        return 1.0 + self.first_rate(matched, level, going_on) * geometric[np.asarray(depths) - 1]
