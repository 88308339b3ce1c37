"""Draft laws written sequentially: the law q_j of draft j given the earlier drafts of its node.

Every draft law of :mod:`multidraft.schemes.draft_laws` draws its k drafts one
after the other, x_j | x_1..x_{j-1} ~ q_j, with q_j a function of q and of
the earlier drafts only:

* ``iid``     q_j = q;
* ``wor``     q_j = q off {x_1..x_{j-1}}, renormalised; once the support is
  used up (q_j = 0) the padding repeats x_1: q_j = delta_{x_j};
* ``greedy``  q_j = delta_{x_j} for the k - 1 fixed tokens T, then
  q_k = q off T renormalised (delta_{x_k} if q(V \\ T) = 0);
* ``hub``     q_1 = q; q_2 = delta_a if x_1 != a, else q off {a} renormalised
  (delta_{x_2} for one-hot q), a = argmax q;
* ``topk``    q_j = delta_{x_j} (deterministic drafts).

Sequence-level verifiers (:mod:`~multidraft.verifiers.traversal`,
:mod:`~multidraft.verifiers.block`) need q_j(x_j) and the residual
(w P - q_j)^+; a :class:`Proposal` holds q_j as a point mass or as a scaled
q with some tokens removed, without a dense copy.  Normalisers are sums of
the remaining entries (:func:`~multidraft.schemes.base.mass_outside`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from multidraft.schemes.base import mass_outside

#: Laws whose draft x_j given the earlier ones is known in closed form here.
SEQUENTIAL_LAWS = ("iid", "wor", "greedy", "hub", "topk")
#: Laws whose every draft, at k = 1, is one draw x ~ q.
SINGLE_DRAW_FROM_Q = ("iid", "wor", "greedy")


class Proposal(NamedTuple):
    """q_j: ``point`` >= 0 for delta_point; else q_j(y) = scale q(y) off the ``removed`` tokens."""

    point: int
    scale: float
    removed: torch.Tensor  # [m] int64 distinct tokens with q_j = 0

    def at(self, q: torch.Tensor, token: int) -> float:
        """q_j(token) for q [V]."""
        if self.point >= 0:
            return 1.0 if token == self.point else 0.0
        if bool((self.removed == token).any()):
            return 0.0
        return self.scale * float(q[token])

    def subtract_from(self, mass: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """mass - q_j as a new tensor [V] (mass [V] unnormalised)."""
        if self.point >= 0:
            out = mass.clone()
            out[self.point] -= 1
            return out
        out = torch.add(mass, q, alpha=-self.scale)
        if self.removed.numel():
            out[self.removed] = mass[self.removed]
        return out


def _point(token: int, q: torch.Tensor) -> Proposal:
    return Proposal(token, 0.0, q.new_zeros(0, dtype=torch.int64))


def _renormalised(q: torch.Tensor, removed: torch.Tensor, token: int) -> Proposal:
    """q off ``removed`` renormalised; delta_token if nothing is left."""
    left = float(mass_outside(q, removed, q.sum())) if removed.numel() else float(q.sum())
    return Proposal(-1, 1.0 / left, removed) if left > 0 else _point(token, q)


def proposals(law: str, q: torch.Tensor, drafts: torch.Tensor) -> list[Proposal]:
    """q_1..q_k of one node: q [V] its draft law, drafts [k] its ordered drafts."""
    x = drafts.tolist()
    k = len(x)
    if law == "iid":
        return [Proposal(-1, 1.0, drafts[:0])] * k
    if law == "topk":
        return [_point(token, q) for token in x]
    if law == "wor":
        out, used_up = [Proposal(-1, 1.0, drafts[:0])], False
        for j in range(1, k):
            used_up = used_up or x[j] in x[:j]  # a repeat is padding: the support is used up
            out.append(_point(x[j], q) if used_up else _renormalised(q, drafts[:j], x[j]))
        return out
    if law == "greedy":
        return [_point(token, q) for token in x[:-1]] + [_renormalised(q, drafts[:-1], x[-1])]
    if law == "hub":
        hub = int(q.argmax())
        if x[0] != hub:
            return [Proposal(-1, 1.0, drafts[:0]), _point(hub, q)]
        return [Proposal(-1, 1.0, drafts[:0]), _renormalised(q, drafts[:1], x[1])]
    raise ValueError(f"draft law {law!r} has no sequential form here; known: {', '.join(SEQUENTIAL_LAWS)}")
