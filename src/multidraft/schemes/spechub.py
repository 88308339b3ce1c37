"""SpecHub (Sun et al., EMNLP 2024, arXiv 2411.05289, Algorithm 2), k = 2.

Draft law: a = argmax q (the hub); x1 ~ q; if x1 != a then x2 = a, else
x2 ~ q restricted to V \\ {a}.  So Q(i, a) = q(i) and
Q(a, i) = q(a) q(i) / (1 - q(a)) for i != a, with 1 - q(a) computed as the
sum of the other entries.

Verification, following the authors' implementation (docs/design.md §1.1); all
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

Steps 1 and 3 read p and q at i only (:func:`check_other`); steps 2 and 4-7
need passes over the vocabulary (:func:`check_hub`), which the sampler runs
only on the rows that reject i.  The hub is read off the drafts
(:func:`hub_is_first`), not found by an argmax over V.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from multidraft.schemes import draws
from multidraft.schemes.base import Scheme, VerificationLaw, at, mass_outside, ratio_test, sample_categorical, uniform


def hub_is_first(q: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Whether x1 is the hub a = argmax q, for a draft pair (x1, x2) [...] of the hub law.

    Every such pair holds a, and a is the draft with the larger q, the lower
    index among equals (argmax takes the first index among ties, and the
    other draft is never an earlier maximiser).  So a is read off the two
    drafts instead of an argmax over V; pairs outside the law's support have
    no kernel to honour.
    """
    q1, q2 = at(q, x1), at(q, x2)
    return (q1 > q2) | ((q1 == q2) & (x1 <= x2))


class Pair(NamedTuple):
    """A draft pair seen from the hub; all fields [n]."""

    a: torch.Tensor  # the hub, argmax q
    i: torch.Tensor  # the other draft (a itself for one-hot q)
    hub_first: torch.Tensor  # pair (a, i); otherwise pair (i, a)
    rest: torch.Tensor  # 1 - q(a), as the sum of the other entries
    c: torch.Tensor  # Q(a, j) = c q(j) for j != a

    def select(self, rows: torch.Tensor) -> Pair:
        return Pair(*(field[rows] for field in self))


def pair_of(q: torch.Tensor, drafts: torch.Tensor) -> Pair:
    """The :class:`Pair` of drafts [n, 2] under q [n, V] (one pass over q, for 1 - q(a))."""
    x1, x2 = drafts[:, 0], drafts[:, 1]
    hub_first = hub_is_first(q, x1, x2)
    a, i = torch.where(hub_first, x1, x2), torch.where(hub_first, x2, x1)
    rest = mass_outside(q, a.unsqueeze(-1), q.sum(-1))
    return Pair(a, i, hub_first, rest, at(q, a) / torch.where(rest == 0, 1, rest))


def check_other(p: torch.Tensor, q: torch.Tensor, pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    """(accept, reject) [n] of the first check, of i: step 1 for (i, a), step 3 for (a, i).

    Only p and q at i are read: p'(i) = (p(i) - q(i))^+ and Q(a, i) = c q(i).
    For one-hot q (i = a) the check never accepts.
    """
    p_i, q_i = at(p, pair.i), at(q, pair.i)
    target = torch.where(pair.hub_first, torch.clamp(p_i - q_i, min=0), p_i)
    return ratio_test(target, torch.where(pair.hub_first, pair.c * q_i, q_i))


def check_hub(p: torch.Tensor, q: torch.Tensor, pair: Pair) -> VerificationLaw:
    """The law after i is rejected: accept [n, 1] the hub (step 5 or 6), reject [n], residual p'' [n, V].

    One buffer: p' = (p - q)^+ off a, then p'' = (p' - Q(a, .))^+ in place;
    the rejected masses come from sum (x)^- = sum (x)^+ - sum x.  One-hot q:
    accept a w.p. p(a), else y ~ p off a (single-draft speculative sampling).
    """
    a, hub = pair.a, pair.a.unsqueeze(-1)
    p_a = at(p, a)
    buffer = (p - q).clamp_(min=0).scatter_(-1, hub, 0)  # p'  [n, V]
    p1_mass = buffer.sum(-1)
    s1 = torch.clamp(p1_mass - ((p.sum(-1) - p_a) - pair.rest), min=0)  # S1 = sum_{j!=a} (q - p)^+
    buffer.addcmul_(q, -pair.c.unsqueeze(-1)).scatter_(-1, hub, 0).clamp_(min=0)  # p''
    s2 = torch.clamp(buffer.sum(-1) - (p1_mass - pair.c * pair.rest), min=0)  # S2 = sum_{j!=a} (Q(a, .) - p')^+
    p1_a = torch.clamp(p_a - s2, min=0)  # p'(a)
    hub_after_i_a, hub_miss_i_a = ratio_test(p1_a, s1)  # step 6
    hub_after_a_i, hub_miss_a_i = ratio_test(p_a, s2)  # step 5
    accept = torch.where(pair.hub_first, hub_after_a_i, hub_after_i_a)
    reject = torch.where(pair.hub_first, hub_miss_a_i, hub_miss_i_a)
    residual = buffer.scatter_(-1, hub, torch.clamp(p1_a - s1, min=0).unsqueeze(-1))  # p'' with p''(a)
    one_hot = pair.rest == 0
    if bool(one_hot.any()):
        p_rest = p.scatter(-1, hub, 0)
        accept = torch.where(one_hot, p_a, accept)
        reject = torch.where(one_hot, p_rest.sum(-1), reject)
        residual = torch.where(one_hot.unsqueeze(-1), p_rest, residual)
    return VerificationLaw(accept.unsqueeze(-1), reject, residual)


class SpecHub(Scheme):
    def _sample_drafts(self, q, k, generator):
        return draws.hub(q, k, generator)

    def _verification_law(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor) -> VerificationLaw:
        shape, vocab = drafts.shape[:-1], p.shape[-1]
        p, q, drafts = p.reshape(-1, vocab), q.reshape(-1, vocab), drafts.reshape(-1, 2)
        pair = pair_of(q, drafts)
        accept_i, reject_i = check_other(p, q, pair)
        hub = check_hub(p, q, pair)
        accept_hub, reject = reject_i * hub.accept[:, 0], reject_i * hub.reject
        hub_first = pair.hub_first.unsqueeze(-1)
        accept = torch.where(hub_first, torch.stack([accept_hub, accept_i], 1), torch.stack([accept_i, accept_hub], 1))
        return VerificationLaw(accept.view(shape + (2,)), reject.view(shape), hub.residual.view(shape + (vocab,)))

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, generator) -> torch.Tensor:
        """y ~ pi(. | drafts); the hub's check and the residual only on the rows that reject i.

        The first check reads p and q at i only, so it is decided for every
        row with one uniform; the passes over the vocabulary (p', p'') run
        on the rows that reject i, and the residual is drawn on the rows that
        also reject the hub.
        """
        shape, vocab = drafts.shape[:-1], p.shape[-1]
        p, q, drafts = p.reshape(-1, vocab), q.reshape(-1, vocab), drafts.reshape(-1, 2)
        pair = pair_of(q, drafts)
        u = uniform(drafts.shape, p, generator)  # [n, 2]
        accept_i, _ = check_other(p, q, pair)
        token = torch.where(u[:, 0] < accept_i, pair.i, pair.a)  # i, or the hub unless it is rejected too
        rows = (u[:, 0] >= accept_i).nonzero().squeeze(-1)
        if rows.numel():
            hub = check_hub(p.index_select(0, rows), q.index_select(0, rows), pair.select(rows))
            missed = (u[rows, 1] >= hub.accept[:, 0]).nonzero().squeeze(-1)
            if missed.numel():
                token[rows[missed]] = sample_categorical(hub.residual.index_select(0, missed), generator)
        return token.view(shape)


SCHEME = SpecHub(name="spechub", draft_law="hub", min_k=2, max_k=2)
