"""Recursive rejection sampling over i.i.d. drafts (Yang et al. 2024; SpecInfer, Miao et al. 2024).

Drafts x_1..x_k i.i.d. from q.  With r_0 = p, round i accepts x_i with
probability min(1, r_{i-1}(x_i) / q(x_i)); on rejection
r_i = norm((r_{i-1} - q)^+).  If every draft is rejected, y ~ r_k.

The residuals r_i do not depend on the drafts, so the exact acceptance is
alpha = 1 - prod_i sum_y (q(y) - r_{i-1}(y))^+ (see ``multidraft.theory``).

The residual is kept unnormalised in one buffer, R_i = m_{i-1} (r_{i-1} - q_i)^+
with m_i = sum R_i (m_0 = 1, R_0 = p), so r_i = R_i / m_i and a round costs
three in-place passes over the vocabulary: R_{i+1} = (R_i - m_i q_{i+1})^+
and its sum.  The same rounds serve the dense kernel
(:func:`recursive_rejection`) and the sampler (:func:`sample_recursive_rejection`),
which runs round i only on the rows that rejected x_1..x_{i-1}.
"""

from __future__ import annotations

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import (
    Scheme,
    VerificationLaw,
    at,
    mass_outside,
    ratio_test,
    sample_categorical,
    uniform,
)


def proposal(
    q: torch.Tensor, drafts: torch.Tensor, i: int, total_q: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(q_{i+1}(x_{i+1}), s) with q_{i+1} = s q off the earlier drafts; q [n, V], drafts [n, k] -> [n], [n].

    With replacement (``total_q`` None) s = 1.  Without, s = 1 / Z_{i+1},
    Z_{i+1} = q(V \\ {x_1..x_i}) (:func:`~multidraft.schemes.base.mass_outside`);
    a round with nothing left to draw (Z = 0) has s = 0, and a draft drawn
    before has proposal 0: neither is ever accepted.
    """
    x, earlier = drafts[:, i], drafts[:, :i]  # [n], [n, i]
    if total_q is None or i == 0:
        return at(q, x), torch.ones_like(x, dtype=q.dtype)
    remaining = mass_outside(q, earlier, total_q)  # [n]
    scale = torch.where(remaining > 0, 1 / torch.where(remaining > 0, remaining, 1), 0)
    drawn_before = (earlier == x.unsqueeze(-1)).any(-1)
    return torch.where(drawn_before, 0, at(q, x) * scale), scale


def subtract(
    residual: torch.Tensor, mass: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, earlier: torch.Tensor | None
) -> torch.Tensor:
    """R <- (R - m q_{i+1})^+ in place, q_{i+1} = s q off ``earlier`` (None: with replacement); [n, V]."""
    kept = residual.gather(-1, earlier) if earlier is not None else None
    residual.addcmul_(q, -(mass * scale).unsqueeze(-1))  # also at the earlier drafts: undone below
    if earlier is not None:
        residual.scatter_(-1, earlier, kept)
    return residual.clamp_(min=0)


def _rows(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """p, q as [n, V] and drafts as [n, k]."""
    vocab, k = p.shape[-1], drafts.shape[-1]
    return p.reshape(-1, vocab), q.reshape(-1, vocab), drafts.reshape(-1, k)


def recursive_rejection(
    p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, without_replacement: bool
) -> VerificationLaw:
    """The recursive-rejection kernel for drafts [..., k]; serves ``rrs`` and ``rrs-wor``.

    Round i+1 tests x_{i+1} against r_i = R_i / m_i with proposal q_{i+1};
    R_1 = (p - q)^+ is the only full-size allocation.
    """
    shape, k = drafts.shape[:-1], drafts.shape[-1]
    p, q, drafts = _rows(p, q, drafts)
    total_q = q.sum(-1) if without_replacement and k > 1 else None  # [n]
    residual, mass = p, torch.ones_like(p[:, 0])  # R_0 = p, m_0 = 1  [n, V], [n]
    still_rejected, accept = torch.ones_like(mass), []
    for i in range(k):
        if i > 0:
            mass = residual.sum(-1)
        proposal_x, scale = proposal(q, drafts, i, total_q)
        accept_i, reject_i = ratio_test(at(residual, drafts[:, i]) / torch.where(mass > 0, mass, 1), proposal_x)
        accept.append(still_rejected * accept_i)
        still_rejected = still_rejected * reject_i
        if i == 0:
            residual = torch.sub(p, q).clamp_(min=0)  # R_1 (r_0 = p, q_1 = q)
        else:
            subtract(residual, mass, q, scale, drafts[:, :i] if without_replacement else None)
    return VerificationLaw(
        torch.stack(accept, dim=-1).view(shape + (k,)), still_rejected.view(shape), residual.view(shape + p.shape[-1:])
    )


def sample_recursive_rejection(
    p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, generator: torch.Generator | None, without_replacement: bool
) -> torch.Tensor:
    """y ~ pi(. | drafts) [...] for the kernel of :func:`recursive_rejection`, round by round.

    Draft x_{i+1} is accepted iff u_{i+1} q_{i+1}(x_{i+1}) < r_i(x_{i+1})
    (probability min(1, r_i / q_{i+1})).  The rows that reject it are
    gathered, and only they compute R_{i+1}: a fraction of the batch that
    shrinks every round, instead of all rows for all k rounds.  The rows
    that reject every draft draw y from R_k.
    """
    shape, k = drafts.shape[:-1], drafts.shape[-1]
    p, q, drafts = _rows(p, q, drafts)
    u = uniform(drafts.shape, p, generator)  # [n, k]
    token = drafts[:, 0].clone()  # [n]
    rows = torch.arange(drafts.shape[0], device=p.device)  # the rows that rejected x_1..x_i
    residual, mass = p, torch.ones_like(u[:, 0])  # R_i, m_i on those rows
    q_rows, drafts_rows, total_rows = q, drafts, None  # sum q on the rows, from round 2 on without replacement
    for i in range(k):
        if i > 0:
            mass = residual.sum(-1)
        proposal_x, scale = proposal(q_rows, drafts_rows, i, total_rows)
        r_x = at(residual, drafts_rows[:, i])
        accept = (u[rows, i] * proposal_x * mass < r_x) & (proposal_x > 0)
        token[rows[accept]] = drafts_rows[accept, i]
        keep = (~accept).nonzero().squeeze(-1)  # [m]
        rows, mass, scale = rows[keep], mass[keep], scale[keep]
        q_rows, drafts_rows = q_rows.index_select(0, keep), drafts_rows[keep]
        total_rows = total_rows[keep] if total_rows is not None else None
        if i == 0:
            residual = p.index_select(0, rows).sub_(q_rows).clamp_(min=0)  # R_1
            total_rows = q_rows.sum(-1) if without_replacement else None
        else:
            earlier = drafts_rows[:, :i] if without_replacement else None
            residual = subtract(residual.index_select(0, keep), mass, q_rows, scale, earlier)
    if rows.numel():
        token[rows] = sample_categorical(residual, generator)
    return token.view(shape)


class RecursiveRejection(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.iid(q, k, generator)

    def _verification_law(self, p, q, drafts):
        return recursive_rejection(p, q, drafts, without_replacement=False)

    def _verify(self, p, q, drafts, generator):
        return sample_recursive_rejection(p, q, drafts, generator, without_replacement=False)


SCHEME = RecursiveRejection(name="rrs", draft_law="iid")
