"""Single-draft speculative sampling (Leviathan et al. 2023; Chen et al. 2023).

Draft x ~ q; accept x with probability min(1, p(x)/q(x)); otherwise output
y ~ norm((p - q)^+).  Lossless, and alpha = sum_x min(p(x), q(x)) = 1 - TV(p, q).
"""

from __future__ import annotations

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, at, ratio_test


class SpeculativeSampling(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.iid(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        x = drafts[..., 0]  # [...]
        accept, reject = ratio_test(at(p, x), at(q, x))
        return VerificationLaw(accept.unsqueeze(-1), reject, (p - q).clamp_(min=0))


SCHEME = SpeculativeSampling(name="sps", draft_law="iid", min_k=1, max_k=1)
