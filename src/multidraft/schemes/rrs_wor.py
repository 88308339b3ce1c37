"""Recursive rejection sampling over drafts drawn without replacement (Jeon et al. 2024; SpecHub §3).

Drafts x_1..x_k are drawn from q without replacement.  Round i uses the
proposal q_i = q restricted to V \\ {x_1..x_{i-1}} and renormalised, and the
residual update r_i = norm((r_{i-1} - q_i)^+).  The normaliser
Z_i = sum_{y not in x_<i} q(y) is computed without cancellation
(:func:`~multidraft.schemes.base.mass_outside`), so a near-certain first
draft keeps full precision.  A round with nothing left to draw (Z_i = 0,
only when q has fewer than k support tokens and the drafts repeat x_1)
accepts nothing and leaves the residual unchanged.
"""

from __future__ import annotations

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme
from multidraft.schemes.rrs import recursive_rejection, sample_recursive_rejection


class RecursiveRejectionWithoutReplacement(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.without_replacement(q, k, generator)

    def _verification_law(self, p, q, drafts):
        return recursive_rejection(p, q, drafts, without_replacement=True)

    def _verify(self, p, q, drafts, generator):
        return sample_recursive_rejection(p, q, drafts, generator, without_replacement=True)


SCHEME = RecursiveRejectionWithoutReplacement(name="rrs-wor", draft_law="wor")
