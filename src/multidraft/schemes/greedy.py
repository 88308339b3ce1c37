"""Greedy multi-draft sampling (Hu et al., "Towards Optimal Multi-draft Speculative Decoding", ICLR 2025).

Draft law: the top k-1 tokens T of q are fixed drafts x_1..x_{k-1}; the last
draft is x ~ q' = q restricted to V \\ T (renormalised).  Verification:
accept x with probability min(1, p(x)/q'(x)); otherwise y ~ norm(r) with
r = (p - q')^+ off T and r = p on T.  Any output in T is a draft, so

    alpha = p(T) + sum_{x not in T} min(p(x), q'(x)),

which equals alpha* of this draft law.  If q(V \\ T) = 0 the last draft
repeats x_1, nothing is tested and y ~ p (alpha = p(T)).
"""

from __future__ import annotations

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, at, mass_outside, ratio_test


class Greedy(Scheme):
    def _sample_drafts(self, q, k, generator):
        if k > q.shape[-1]:
            raise ValueError(f"greedy drafts need k <= V, got k = {k} and V = {q.shape[-1]}")
        return draws.greedy(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        fixed, x = drafts[..., :-1], drafts[..., -1]  # T [..., k-1], x [...]
        free_mass = mass_outside(q, fixed, q.sum(-1))  # q(V \ T), [...]
        scale = torch.where(free_mass > 0, 1 / torch.where(free_mass > 0, free_mass, 1), 0)  # q' = scale q off T
        in_fixed = (fixed == x.unsqueeze(-1)).any(-1)
        accept, reject = ratio_test(at(p, x), torch.where(in_fixed, 0, at(q, x) * scale))
        residual = torch.addcmul(p, q, -scale.unsqueeze(-1))  # p - q'  [..., V], the one allocation
        residual.scatter_(-1, fixed, p.gather(-1, fixed)).clamp_(min=0)  # r = p on T
        no_weight = torch.zeros_like(fixed, dtype=p.dtype)
        return VerificationLaw(torch.cat([no_weight, accept.unsqueeze(-1)], -1), reject, residual)


SCHEME = Greedy(name="greedy", draft_law="greedy")
