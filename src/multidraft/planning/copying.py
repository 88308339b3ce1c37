"""What a chain of drafts copied from the text is predicted to yield, from what the generation has seen.

A copied chain c_1..c_d (:mod:`multidraft.lookup`) is verified by the token walk with a point-mass
draft law, so c_i is accepted, once c_1..c_{i-1} were, with probability a_i = p(c_i | text, c_<i),
and a step emits E = 1 + sum_{k=1..d} prod_{i<=k} a_i tokens on average.

**The model.**  A copy's chance depends on its *state*: a copy that starts afresh is accepted with
probability alpha_m, where m is the length of the n-gram it was found by (a longer match copies
better); one that goes on, the text's last r tokens having each been the copy proposed before it, with
probability beta_b(r), where b(r) is r's bit length, capped at :data:`RUN_STATES` (r = 1, 2-3, 4-7,
8-15, >= 16).  A copy that has held for a while tends to go on: in held-out texts of the bundled pair
the mean chance is 0.27 afresh, 0.63 at r = 1, 0.78 at r = 2-3, 0.84 at 4-7, 0.91 at 8-15 and 0.98
from 16 on (``benchmarks/copy_priors.py``), so a single beta would predict long chains too short.
Along the chain the state moves on with every copied token, so a chain started in state r_0 (0:
afresh) yields

    E(d) = 1 + sum_{k=1..d} prod_{i=1..k} a_i,   a_1 = alpha_m (r_0 = 0) or beta_b(r_0),
                                                 a_i = beta_b(r_0 + i - 1) for i >= 2.

**Evidence**, exact chances rather than sampled outcomes: every emitted token t_j was drawn from (or
verified against) the target's law p_j at its position, which the step computed; the text before
j gives the copy c(j) that a chain started at j would have proposed first, so a(j) = p_j(c(j)) is
the chance it would have been accepted.  It is filed under the copy's state at j (the run r of tokens
before j that were each the copy proposed at their position), whatever its step ran: the model's
drafts, plain decoding or a copy.  Priors: Beta laws with the means :data:`FIRST_PRIOR` and
:data:`ONWARD_PRIOR` (fit on held-out prompts by ``benchmarks/copy_priors.py``), each worth
:data:`PRIOR_WEIGHT` observations, updated by the chances as fractional successes (the last
:data:`WINDOW` of each state, since a text's kind can change).  Where a margin is wanted, the first
acceptance is read at a lower quantile of its Beta posterior.

**One text, one fidelity.**  A text that copies (code edited in place, a quoted passage) copies in
every state: its going-on chances sit near 1 from r = 1 on, while the priors above average over
texts that copy and texts that drift.  Filed per state, that evidence would reach the long states
(8-15, >= 16) only after the copy had run that long.  So the states share one multiplier s of their
*hazards* 1 - beta, a proportional-hazards model as the planner's calibration of drafted trees
(:mod:`multidraft.planning.online`): over the chances a of the *other* going-on states (so that no
chance is counted twice),

    s = (k + sum (1 - a)) / (k + sum (1 - beta_prior(state of a))),   k = :data:`SHARED_FAILURES`,

within :data:`HAZARD_RANGE`, and state b's Beta prior has mean 1 - s (1 - beta_prior(b)), capped at
:data:`LONGEST_HAZARD`, before its own chances update it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from multidraft.lookup import LONGEST_MATCH

#: Run states of a copy going on: r's bit length, capped here (1, 2-3, 4-7, 8-15, >= 16).
RUN_STATES = 5
#: Prior mean of a fresh copy's acceptance, whatever its n-gram (benchmarks/results/copy_priors.md, all).
FIRST_PRIOR = 0.27
#: Prior mean of a going-on copy's acceptance, per run state 1..RUN_STATES (the same table).
ONWARD_PRIOR = (0.63, 0.78, 0.84, 0.91, 0.98)
#: Weight of each prior, in observations.
PRIOR_WEIGHT = 2.0
#: Chances kept per state (the most recent).
WINDOW = 48
#: Weight, in failed copies, of the shared hazard multiplier's prior value of 1.
SHARED_FAILURES = 2.0
#: Bounds of the shared hazard multiplier.
HAZARD_RANGE = (0.1, 10.0)
#: Largest hazard of a going-on copy after the multiplier (its prior mean stays above 0).
LONGEST_HAZARD = 0.99


def run_state(run: int) -> int:
    """The state of a copy after ``run`` tokens that were each the copy proposed before them: 0 afresh, else
    r's bit length capped at :data:`RUN_STATES`."""
    return min(int(run).bit_length(), RUN_STATES)


@dataclass
class CopyEvidence:
    """The chances seen so far (module docstring)."""

    first: dict[int, list[float]] = field(default_factory=lambda: {m: [] for m in range(1, LONGEST_MATCH + 1)})
    onward: dict[int, list[float]] = field(default_factory=lambda: {b: [] for b in range(1, RUN_STATES + 1)})

    def add(self, matched: int, chance: float, run: int) -> None:
        """a(j) = p_j(c(j)) of a copy found by an n-gram of ``matched`` tokens, after ``run`` copied tokens."""
        chance = min(max(chance, 0.0), 1.0)
        (self.onward[run_state(run)] if run else self.first[matched]).append(chance)

    def rate(self, matched: int, run: int = 0, level: float | None = None) -> float:
        """alpha_m (beta_b(run) if ``run`` > 0): its posterior mean, or its Beta posterior's ``level`` quantile."""
        if run:
            state = run_state(run)
            seen = self.onward[state][-WINDOW:]
            prior = 1.0 - min(LONGEST_HAZARD, self.hazard_scale(state) * (1.0 - ONWARD_PRIOR[state - 1]))
        else:
            seen, prior = self.first[matched][-WINDOW:], FIRST_PRIOR
        a = prior * PRIOR_WEIGHT + sum(seen)
        b = (1.0 - prior) * PRIOR_WEIGHT + len(seen) - sum(seen)
        return a / (a + b) if level is None else float(scipy.stats.beta.ppf(level, a, b))

    def hazard_scale(self, state: int) -> float:
        """s of going-on state ``state`` from the chances of the other going-on states (module docstring)."""
        failed = expected = 0.0
        for other, seen in self.onward.items():
            if other != state:
                seen = seen[-WINDOW:]
                failed += len(seen) - sum(seen)
                expected += len(seen) * (1.0 - ONWARD_PRIOR[other - 1])
        low, high = HAZARD_RANGE
        return min(high, max(low, (SHARED_FAILURES + failed) / (SHARED_FAILURES + expected)))

    def tokens(self, matched: int, depths: np.ndarray, level: float | None = None, run: int = 0) -> np.ndarray:
        """E tokens per step [len(depths)] of copied chains of ``depths`` drafts found by ``matched``-token n-grams,
        started after ``run`` copied tokens (0: afresh); the first acceptance at its ``level`` quantile if given."""
        longest = int(np.max(depths))
        onward = [self.rate(matched, r) for r in range(run + 1, run + longest)]  # a_2 .. a_longest
        chances = np.array([self.rate(matched, run, level), *onward])  # [longest]
        reach = np.cumsum(np.cumprod(chances))  # [longest] sum_{k<=d} prod_{i<=k} a_i
        return 1.0 + reach[np.asarray(depths) - 1]
