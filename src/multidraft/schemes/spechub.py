"""SpecHub (Sun et al., EMNLP 2024, arXiv 2411.05289, Algorithm 2), k = 2.

Draft law: a = argmax q (the hub); x1 ~ q; if x1 != a then x2 = a, else
x2 ~ q restricted to V \\ {a}.  So Q(i, a) = q(i) and
Q(a, i) = q(a) q(i) / (1 - q(a)) for i != a, with 1 - q(a) computed as the
sum of the other entries.

Verification, following the authors' implementation (DESIGN §1.1); all
vectors are zero at a unless stated:

1. pair (i, a): accept i w.p. min(1, p(i)/q(i));
2. p'(j) = (p(j) - q(j))^+,  s1(j) = (q(j) - p(j))^+;
3. pair (a, i): accept i w.p. min(1, p'(i)/Q(a, i));
4. p''(j) = (p'(j) - Q(a, j))^+,  s2(j) = (Q(a, j) - p'(j))^+;
5. pair (a, i), i rejected: accept a w.p. min(1, p(a)/S2), S2 = sum s2;
   then p'(a) = (p(a) - S2)^+;
6. pair (i, a), i rejected: accept a w.p. min(1, p'(a)/S1), S1 = sum s1;
   then p''(a) = (p'(a) - S1)^+;
7. otherwise y ~ norm(p'').

It attains alpha* of its own draft law:
alpha = 1 - max(0, sum_{i != a} (q(i)/(1 - q(a)) - p(i))^+ - p(a)).
A one-hot q (nothing to draw besides a) gives the pair (a, a), checked as
single-draft speculative sampling: accept a w.p. p(a), else y ~ p off a.
"""

from __future__ import annotations

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, at, mass_outside, ratio_test


class SpecHub(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.hub(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        a = q.argmax(-1)  # [...], the hub
        hub = a.unsqueeze(-1)
        q_a, p_a = at(q, a), at(p, a)
        rest = mass_outside(q, hub, q.sum(-1))  # 1 - q(a), as the sum of the other entries
        one_hot = rest == 0
        c = q_a / torch.where(one_hot, 1, rest)  # Q(a, j) = c q(j) for j != a
        x1, x2 = drafts[..., 0], drafts[..., 1]
        hub_first = x1 == a  # pair (a, i); otherwise pair (i, a)
        i = torch.where(hub_first, x2, x1)  # the non-hub draft

        # One buffer: p' = (p - q)^+ off a, then p'' = (p' - Q(a, .))^+ in place.
        # The rejected masses come from sum (x)^- = sum (x)^+ - sum x.
        buffer = (p - q).clamp_(min=0).scatter_(-1, hub, 0)  # p'
        p1_i, p1_mass = at(buffer, i), buffer.sum(-1)
        s1 = torch.clamp(p1_mass - ((p.sum(-1) - p_a) - rest), min=0)  # S1 = sum_{j!=a} (q - p)^+
        buffer.addcmul_(q, -c.unsqueeze(-1)).scatter_(-1, hub, 0).clamp_(min=0)  # p''
        s2 = torch.clamp(buffer.sum(-1) - (p1_mass - c * rest), min=0)  # S2 = sum_{j!=a} (Q(a, .) - p')^+
        p1_a = torch.clamp(p_a - s2, min=0)  # p'(a)
        p2_a = torch.clamp(p1_a - s1, min=0)  # p''(a)

        # Pair (i, a): step 1, then step 6.  Pair (a, i): step 3, then step 5.
        accept_i_a, reject_i_a = ratio_test(at(p, i), at(q, i))
        accept_a_i, reject_a_i = ratio_test(p1_i, c * at(q, i))
        hub_after_i_a, hub_miss_i_a = ratio_test(p1_a, s1)
        hub_after_a_i, hub_miss_a_i = ratio_test(p_a, s2)
        accept_i = torch.where(hub_first, accept_a_i, accept_i_a)
        rejected_i = torch.where(hub_first, reject_a_i, reject_i_a)
        accept_hub = rejected_i * torch.where(hub_first, hub_after_a_i, hub_after_i_a)
        reject = rejected_i * torch.where(hub_first, hub_miss_a_i, hub_miss_i_a)
        residual = buffer.scatter_(-1, hub, p2_a.unsqueeze(-1))  # p'' with p''(a)

        # One-hot q: the pair (a, a) is single-draft speculative sampling of a.
        if bool(one_hot.any()):
            p_rest = p.scatter(-1, hub, 0)
            accept_hub = torch.where(one_hot, p_a, accept_hub)
            accept_i = torch.where(one_hot, 0, accept_i)
            reject = torch.where(one_hot, p_rest.sum(-1), reject)
            residual = torch.where(one_hot.unsqueeze(-1), p_rest, residual)
        accept = torch.where(
            hub_first.unsqueeze(-1), torch.stack([accept_hub, accept_i], -1), torch.stack([accept_i, accept_hub], -1)
        )
        return VerificationLaw(accept, reject, residual)


SCHEME = SpecHub(name="spechub", draft_law="hub", min_k=2, max_k=2)
