"""Recursive rejection sampling over drafts drawn without replacement (Jeon et al. 2024; SpecHub §3).

Drafts x_1..x_k are drawn from q without replacement.  Round i uses the
proposal q_i = q restricted to V \\ {x_1..x_{i-1}} and renormalised, and the
residual update r_i = norm((r_{i-1} - q_i)^+).  The normaliser
Z_i = sum_{y not in x_<i} q(y) is a sum of the remaining entries, never
``1 - sum q(x_<i)``, so a near-certain first draft keeps full precision.
A round with nothing left to draw (Z_i = 0, only when q has fewer than k
support tokens) accepts nothing and leaves the residual unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, normalise
from multidraft.schemes.rrs import recursive_rejection


def proposals_without_replacement(q: torch.Tensor, drafts: torch.Tensor) -> Iterator[torch.Tensor]:
    """q_1 = q, q_i = norm(q with x_1..x_{i-1} removed): yields [..., V] per round."""
    remaining = q
    for i in range(drafts.shape[-1]):
        if i > 0:
            remaining = remaining.scatter(-1, drafts[..., i - 1 : i], 0)
        yield normalise(remaining)


class RecursiveRejectionWithoutReplacement(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.without_replacement(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor):
        return recursive_rejection(p, drafts, proposals_without_replacement(q, drafts))


SCHEME = RecursiveRejectionWithoutReplacement(name="rrs-wor", draft_law="wor")
