"""The engines' baseline: deterministic top-k drafts, verified against the target alone.

What vLLM, SGLang (``tree_speculative_sampling_target_only``), TensorRT-LLM
and EAGLE ship.  **Draft law** (``topk``): the k most likely tokens of q, q
descending, ties by lower index; no randomness.  If k > V the drafts after
the V-th repeat x_1.  **Verification**: q is treated as one-hot at each
draft, so recursive rejection with proposal delta_{x_i} reads the target
only: with r_0 = p, draft x_i is accepted with probability r_{i-1}(x_i) and
a rejected draft is zeroed, r_i = norm(r_{i-1} with x_i set to 0); if all
are rejected, y ~ r_k = norm(p off T), T = {x_1..x_k}.  For distinct drafts
the products telescope, r_{i-1}(x_i) prod_{j<i} (1 - r_{j-1}(x_j)) = p(x_i),
so the kernel is

    pi(y | T) = p(y)      (every y),      alpha = p(T),

lossless for any q and equal to alpha* of this draft law (Q is a point
mass on T, and no lossless rule can output a draft more often than p(T)).
A draft with p(x) = 0 is never accepted: the test is ``u m < p(x)``
(strict, u in [0, 1)), so a coin of exactly 0 does not accept it.
"""

from __future__ import annotations

import torch

from multidraft.schemes.base import Scheme, VerificationLaw, mass_outside, sample_categorical, uniform
from multidraft.schemes.draws import top_tokens


def top_k_drafts(q: torch.Tensor, k: int) -> torch.Tensor:
    """The k most likely tokens [..., k] (ties by lower index); beyond V they repeat x_1."""
    drawn = min(k, q.shape[-1])
    tokens = top_tokens(q, drawn)  # [..., drawn]
    return torch.cat([tokens, tokens[..., :1].expand(tokens.shape[:-1] + (k - drawn,))], dim=-1)


def first_occurrence(drafts: torch.Tensor) -> torch.Tensor:
    """bool [..., k]: draft i differs from every earlier draft."""
    k = drafts.shape[-1]
    same = drafts.unsqueeze(-1) == drafts.unsqueeze(-2)  # [..., k, k]
    earlier = torch.ones(k, k, dtype=torch.bool, device=drafts.device).tril(-1)
    return ~(same & earlier).any(-1)


class TopK(Scheme):
    def _sample_drafts(self, q, k, generator):
        return top_k_drafts(q, k)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        accept = torch.where(first_occurrence(drafts), p.gather(-1, drafts), 0)  # [..., k]; a repeat has r(x) = 0
        residual = p.scatter(-1, drafts, 0)  # [..., V] p off T
        return VerificationLaw(accept, residual.sum(-1), residual)  # reject = p(V \ T), summed directly

    def _verify(self, p, q, drafts, generator):
        """The engines' sequential coins: x_i accepted iff u_i p(V \\ x_<i) < p(x_i); else y ~ p off T.

        Only the first min(k, V) drafts can be new.  A row whose residual p(V \\ T) is 0 rejects every
        draft with probability 0 only; should rounding let it happen, y is drawn from p, never from
        a zero row.
        """
        vocab, k = p.shape[-1], drafts.shape[-1]
        p_rows, d_rows = p.reshape(-1, vocab), drafts.reshape(-1, k)
        u = uniform(d_rows.shape, p_rows, generator)  # [n, k]
        total = p_rows.sum(-1)
        token = d_rows[:, 0].clone()
        undecided = torch.ones_like(token, dtype=torch.bool)
        for i in range(min(k, vocab)):
            left = mass_outside(p_rows, d_rows[:, :i], total) if i else total  # r_{i-1} unnormalised mass
            hit = undecided & (u[:, i] * left < p_rows.gather(-1, d_rows[:, i : i + 1]).squeeze(-1))
            hit &= ~(d_rows[:, :i] == d_rows[:, i : i + 1]).any(-1)
            token = torch.where(hit, d_rows[:, i], token)
            undecided &= ~hit
        rows = undecided.nonzero().squeeze(-1)
        if rows.numel():
            kept = p_rows.index_select(0, rows)  # [m, V]
            residual = kept.scatter(-1, d_rows[rows], 0)
            token[rows] = sample_categorical(torch.where(residual.sum(-1, keepdim=True) > 0, residual, kept), generator)
        return token.view(drafts.shape[:-1])


SCHEME = TopK(name="topk", draft_law="topk")
