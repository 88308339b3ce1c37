"""Recursive rejection sampling over i.i.d. drafts (Yang et al. 2024; SpecInfer, Miao et al. 2024).

Drafts x_1..x_k i.i.d. from q.  With r_0 = p, round i accepts x_i with
probability min(1, r_{i-1}(x_i) / q(x_i)); on rejection
r_i = norm((r_{i-1} - q)^+).  If every draft is rejected, y ~ r_k.

The residuals r_i do not depend on the drafts, so the exact acceptance is
alpha = 1 - prod_i sum_y (q(y) - r_{i-1}(y))^+ (see ``multidraft.theory``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, at, normalise, ratio_test


def recursive_rejection(p: torch.Tensor, drafts: torch.Tensor, proposals: Iterable[torch.Tensor]) -> VerificationLaw:
    """The recursive-rejection kernel for drafts [..., k] with round proposals q_i [..., V].

    Round i tests x_i against the current residual r_{i-1} with proposal q_i
    and moves on to r_i = norm((r_{i-1} - q_i)^+); one function serves
    ``rrs`` (q_i = q) and ``rrs-wor`` (q_i = q without the earlier drafts).
    """
    residual = p  # r_0, normalised at the start of every round
    still_rejected = torch.ones(p.shape[:-1], dtype=p.dtype, device=p.device)  # [...]
    accept = []
    for i, proposal in enumerate(proposals):
        x = drafts[..., i]
        accept_i, reject_i = ratio_test(at(residual, x), at(proposal, x))
        accept.append(still_rejected * accept_i)
        still_rejected = still_rejected * reject_i
        residual = torch.clamp(residual - proposal, min=0)
        if i + 1 < drafts.shape[-1]:
            residual = normalise(residual)
    return VerificationLaw(torch.stack(accept, dim=-1), still_rejected, residual)


class RecursiveRejection(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.iid(q, k, generator)

    def _verification_law(self, p, q, drafts):
        return recursive_rejection(p, drafts, (q for _ in range(drafts.shape[-1])))


SCHEME = RecursiveRejection(name="rrs", draft_law="iid")
