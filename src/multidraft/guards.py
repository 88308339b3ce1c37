"""Refuse non-finite model outputs before anything is sampled from them.

A NaN or infinite logit (a broken checkpoint, an overflow in half precision)
would otherwise turn into a NaN law that one sampler rejects with a bare
``ValueError`` and another silently maps to token 0.  :func:`check_finite`
runs after every model forward and raises :class:`NonFiniteLogits` naming
the model, the step and the position instead.

Cost: one sum reduction per forward.  NaN and infinities propagate through a
sum (inf - inf is NaN), so a finite sum proves every entry finite; only when
the sum is not finite is the tensor searched for the first bad entry (a sum
of finite logits that overflows is recognised then and let through).  On a
[31, 151936] float32 tensor the sum takes about 0.24 ms on one CPU thread,
against 7 ms for ``torch.isfinite(x).all()`` and 1.9 ms for the softmax
that follows anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class NonFiniteLogits(ValueError):
    """A model produced NaN or infinite logits; the message says which model, where, and how many."""


def check_finite(
    logits: torch.Tensor,
    role: str,
    positions: torch.Tensor | Sequence[int],
    *,
    at: str,
    nodes: Sequence[int] | None = None,
) -> None:
    """Raise :class:`NonFiniteLogits` unless every entry of ``logits`` [R, V] is finite.

    ``role`` names the model ("target", "draft"); ``positions`` [R] are the
    position ids of the tokens whose output rows these are; ``at`` says when
    ("step 3", "prompt 2"); ``nodes`` [R], if given, the tree node of each row.
    """
    accumulate = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if bool(torch.isfinite(logits.sum(dtype=accumulate))):
        return
    bad = ~torch.isfinite(logits)  # [R, V]
    if not bool(bad.any()):
        return  # finite logits whose sum overflowed
    row = int(bad.any(-1).nonzero()[0, 0])
    value = float(logits[row][bad[row]][0])
    kind = "NaN" if value != value else ("+inf" if value > 0 else "-inf")
    where = f"{at}, position {int(positions[row])}" + (f" (tree node {int(nodes[row])})" if nodes is not None else "")
    raise NonFiniteLogits(
        f"{role} model produced {kind} logits at {where}; {int(bad.sum())} of {bad.numel()} logits are not "
        "finite, so nothing can be sampled from them (check the checkpoint and the dtype)"
    )
