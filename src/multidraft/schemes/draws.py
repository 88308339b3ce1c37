"""Batched samplers for the draft laws (DESIGN §1), in torch.

Each function maps draft probabilities ``q`` [..., V] to drafts [..., k]
(int64) using only the given ``torch.Generator``; no Python loop over the
batch or the vocabulary.  The laws and their conventions are those of
:mod:`multidraft.theory.draft_laws`, which enumerates them exactly.
"""

from __future__ import annotations

import torch

from multidraft.schemes.base import sample_categorical


def iid(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k independent draws from q: [..., V] -> [..., k]."""
    return sample_categorical(q, generator, num_samples=k)


def without_replacement(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k sequential draws without replacement, by the exponential race.

    Token y "arrives" at E_y / q(y) with E_y ~ Exp(1) i.i.d.; the order of
    arrival is a draw without replacement from q (the Gumbel-top-k trick), so
    the k first arrivals are the drafts in order.  Tokens with q = 0 never
    arrive: if fewer than k tokens have mass, the missing drafts repeat x_1.
    """
    exponential = torch.empty_like(q).exponential_(generator=generator)  # [..., V]
    arrival = torch.where(q > 0, exponential / q, torch.inf)
    drawn = min(k, q.shape[-1])
    times, drafts = torch.topk(arrival, drawn, dim=-1, largest=False)  # [..., drawn], ascending
    drafts = torch.where(torch.isinf(times), drafts[..., :1], drafts)
    return torch.cat([drafts, drafts[..., :1].expand(drafts.shape[:-1] + (k - drawn,))], dim=-1)


def hub(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """SpecHub's draft law (k = 2, arXiv 2411.05289 §4).

    a = argmax q; x1 ~ q; if x1 != a then x2 = a, else x2 ~ q restricted to
    V \\ {a}.  For one-hot q the pair is (a, a).
    """
    a = q.argmax(-1, keepdim=True)  # [..., 1], first index among ties
    first = sample_categorical(q, generator)  # [...]
    off_hub = q.scatter(-1, a, 0)  # [..., V]
    second_if_hub = sample_categorical(off_hub, generator)  # [...]
    has_rest = off_hub.sum(-1) > 0
    hub_token = a.squeeze(-1)
    second = torch.where(first != hub_token, hub_token, torch.where(has_rest, second_if_hub, hub_token))
    return torch.stack([first, second], dim=-1)


def top_tokens(q: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` most likely tokens, q descending, ties by lower index: [..., count]."""
    remaining, tokens = q.clone(), []
    for _ in range(count):  # count = k - 1 <= 7: a loop over drafts, not the vocabulary
        token = remaining.argmax(-1, keepdim=True)  # first index among ties
        tokens.append(token)
        remaining.scatter_(-1, token, -1.0)
    return torch.cat(tokens, dim=-1) if tokens else q.new_zeros(q.shape[:-1] + (0,), dtype=torch.int64)


def greedy(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Hu et al. (ICLR 2025) greedy drafts: the top k-1 tokens T, then x_k ~ q on V \\ T.

    If q(V \\ T) = 0 the last draft repeats x_1.
    """
    fixed = top_tokens(q, k - 1)  # [..., k-1]
    rest = q.scatter(-1, fixed, 0)  # [..., V]
    last = sample_categorical(rest, generator)  # [...]
    if k > 1:
        last = torch.where(rest.sum(-1) > 0, last, fixed[..., 0])
    return torch.cat([fixed, last.unsqueeze(-1)], dim=-1)
