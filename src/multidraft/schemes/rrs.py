"""Recursive rejection sampling over i.i.d. drafts (Yang et al. 2024; SpecInfer, Miao et al. 2024).

Drafts x_1..x_k i.i.d. from q.  With r_0 = p, round i accepts x_i with
probability min(1, r_{i-1}(x_i) / q(x_i)); on rejection
r_i = norm((r_{i-1} - q)^+).  If every draft is rejected, y ~ r_k.

The residuals r_i do not depend on the drafts, so the exact acceptance is
alpha = 1 - prod_i sum_y (q(y) - r_{i-1}(y))^+ (see ``multidraft.theory``).
"""

from __future__ import annotations

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, at, mass_outside, ratio_test


def recursive_rejection(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, without_replacement: bool) -> VerificationLaw:
    """The recursive-rejection kernel for drafts [..., k]; serves ``rrs`` and ``rrs-wor``.

    Round i tests x_i against the residual r_{i-1} with proposal q_i and
    moves on to r_i = norm((r_{i-1} - q_i)^+).  With replacement q_i = q;
    without, q_i = q off {x_1..x_{i-1}} divided by Z_i = q(V \\ {x_<i}).
    One residual buffer is updated in place: a handful of passes over the
    vocabulary per round and a single allocation.
    """
    k = drafts.shape[-1]
    residual = p.clone()  # r_{i-1}, normalised at the start of each round  [..., V]
    total_q = q.sum(-1)  # [...]
    ones = torch.ones_like(total_q)
    still_rejected, accept = ones, []
    for i in range(k):
        x, earlier = drafts[..., i], drafts[..., :i]  # [...], [..., i]
        scale = ones  # q_i = scale * q outside the earlier drafts
        drawn_before = torch.zeros_like(x, dtype=torch.bool)
        if without_replacement and i > 0:
            remaining = mass_outside(q, earlier, total_q)  # Z_i, [...]
            scale = torch.where(remaining > 0, 1 / torch.where(remaining > 0, remaining, 1), 0)
            drawn_before = (earlier == x.unsqueeze(-1)).any(-1)
        proposal_x = torch.where(drawn_before, 0, at(q, x) * scale)
        accept_i, reject_i = ratio_test(at(residual, x), proposal_x)
        accept.append(still_rejected * accept_i)
        still_rejected = still_rejected * reject_i
        kept = residual.gather(-1, earlier) if without_replacement else None
        residual.addcmul_(q, -scale.unsqueeze(-1))  # r - q_i (also at earlier drafts: undone below)
        if without_replacement:
            residual.scatter_(-1, earlier, kept)  # q_i = 0 on the earlier drafts
        residual.clamp_(min=0)
        if i + 1 < k:
            mass = residual.sum(-1, keepdim=True)
            residual.div_(torch.where(mass > 0, mass, 1))
    return VerificationLaw(torch.stack(accept, dim=-1), still_rejected, residual)


class RecursiveRejection(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.iid(q, k, generator)

    def _verification_law(self, p, q, drafts):
        return recursive_rejection(p, q, drafts, without_replacement=False)


SCHEME = RecursiveRejection(name="rrs", draft_law="iid")
