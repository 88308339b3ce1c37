"""Batched samplers for the draft laws (DESIGN §1), in torch.

Each function maps draft probabilities ``q`` [..., V] to drafts [..., k]
(int64) using only the given ``torch.Generator``; no Python loop over the
batch or the vocabulary (the loops below run over the k <= 8 drafts).  The
laws and their conventions are those of :mod:`multidraft.schemes.draft_laws`,
which enumerates them exactly.

Every law that draws from q with some tokens R removed (draws without
replacement, the hub's second draw, greedy's last draw) uses the two-level
sampler of :func:`~multidraft.schemes.base.sample_categorical` on the block
sums of q, computed once (one reduction over V).  Removing R never copies q:
the blocks holding R get their masses recomputed exactly from their
``BLOCK`` entries with R zeroed (:func:`_recount`), never by subtracting
q(R) from a block sum, so a block with no mass left has sum exactly 0 and is
never chosen, and the chosen block is searched with R zeroed inside it
(:func:`_draw`).  Each draw then costs O(V / BLOCK + BLOCK |R|) per row.
"""

from __future__ import annotations

import torch

from multidraft.schemes.base import BLOCK, block_sums, locate, sample_categorical, uniform


def iid(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k independent draws from q: [..., V] -> [..., k]."""
    return sample_categorical(q, generator, num_samples=k)


def _block_entries(rows: torch.Tensor, blocks: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The entries of the given blocks with the ``removed`` tokens zeroed.

    rows [n, V], blocks [n, j] (block indices), removed [n, m] (tokens)
    -> [n, j, BLOCK]; entries past V (the last block may be short) are 0.
    """
    vocab = rows.shape[-1]
    tokens = blocks.unsqueeze(-1) * BLOCK + torch.arange(BLOCK, device=rows.device)  # [n, j, BLOCK]
    entries = rows.gather(-1, tokens.clamp_max(vocab - 1).flatten(1)).view(tokens.shape)
    place = removed.unsqueeze(1) - blocks.unsqueeze(-1) * BLOCK  # [n, j, m], each removed token's place in each block
    place = torch.where((place >= 0) & (place < BLOCK), place, BLOCK)  # BLOCK: not in this block
    kept = torch.ones(tokens.shape[:-1] + (BLOCK + 1,), dtype=torch.bool, device=rows.device).scatter_(-1, place, False)
    return torch.where(kept[..., :BLOCK] & (tokens < vocab), entries, 0)


def _recount(rows: torch.Tensor, sums: torch.Tensor, tokens: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """``sums`` [n, B] with the blocks of ``tokens`` [n, j] summed anew from their entries off ``removed`` [n, m].

    A recounted block is a sum of non-negative entries, so it is 0 exactly
    when nothing in it is left; every block holding a removed token must be
    recounted before :func:`_draw` excludes that token.
    """
    blocks = tokens // BLOCK  # [n, j]
    return sums.scatter(-1, blocks, _block_entries(rows, blocks, removed).sum(-1))


def _draw(
    rows: torch.Tensor, sums: torch.Tensor, removed: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw from q restricted to V \\ R, renormalised: returns (token [n], left [n]).

    rows [n, V] is q; ``removed`` [n, m] is R; ``sums`` [n, B] are the block
    masses of q off R (:func:`_recount`); u [n] ~ U[0, 1).  The block is
    located by ``u * left`` among the running block masses, with
    left = q(V \\ R), then the token inside it among the block's entries off R,
    so P(y) = q(y) / q(V \\ R) for y not in R, and no token in R or of zero
    mass is returned.  Where left = 0 the token is 0 (the callers replace it).
    """
    cdf = torch.cumsum(sums, dim=-1)  # [n, B]
    left = cdf[:, -1]
    target = (u * left).unsqueeze(-1)  # [n, 1]
    block = locate(cdf, target)  # [n, 1]
    before = torch.where(block > 0, cdf.gather(-1, (block - 1).clamp_min(0)), 0)  # mass of the earlier blocks
    inside = torch.cumsum(_block_entries(rows, block, removed).squeeze(1), dim=-1)  # [n, BLOCK]
    offset = locate(inside, target - before)  # [n, 1]
    return torch.where(left > 0, (block * BLOCK + offset).squeeze(-1), 0), left


def without_replacement(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k sequential draws without replacement: [..., V] -> [..., k].

    x_1 ~ q and x_i ~ q restricted to V \\ {x_1..x_{i-1}}, renormalised by
    Z_i = q(V \\ {x_1..x_{i-1}}); so Q(x) = prod_i q(x_i) / Z_i.  Tokens with
    q = 0 are never drawn: if fewer than k tokens have mass, the missing
    drafts repeat x_1.  The block sums of q are computed once; after each
    draw only the drawn token's block is recounted.
    """
    vocab = q.shape[-1]
    rows = q.reshape(-1, vocab)  # [n, V]
    sums = block_sums(rows)  # [n, B]
    u = uniform((rows.shape[0], k), rows, generator)  # [n, k]
    drafts = rows.new_zeros((rows.shape[0], 0), dtype=torch.int64)  # [n, i], grows to [n, k]
    for i in range(k):  # a loop over the drafts
        token, left = _draw(rows, sums, drafts, u[:, i])
        if i:
            token = torch.where(left > 0, token, drafts[:, 0])
        drafts = torch.cat([drafts, token.unsqueeze(-1)], dim=-1)
        sums = _recount(rows, sums, token.unsqueeze(-1), drafts)
    return drafts.view(q.shape[:-1] + (k,))


def hub(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """SpecHub's draft law (k = 2, arXiv 2411.05289 §4).

    a = argmax q; x1 ~ q; if x1 != a then x2 = a, else x2 ~ q restricted to
    V \\ {a}.  For one-hot q the pair is (a, a).  Both draws share one set of
    block sums; the second recounts a's block without a.
    """
    vocab = q.shape[-1]
    rows = q.reshape(-1, vocab)  # [n, V]
    a = top_tokens(rows, 1)  # [n, 1], argmax q, first index among ties
    sums = block_sums(rows)  # [n, B]
    u = uniform((rows.shape[0], 2), rows, generator)  # [n, 2]
    first, _ = _draw(rows, sums, a[:, :0], u[:, 0])  # [n]
    second_if_hub, rest = _draw(rows, _recount(rows, sums, a, a), a, u[:, 1])  # [n], rest = q(V \ {a})
    hub_token = a.squeeze(-1)
    second = torch.where((first != hub_token) | (rest == 0), hub_token, second_if_hub)
    return torch.stack([first, second], dim=-1).view(q.shape[:-1] + (2,))


def block_max(rows: torch.Tensor) -> torch.Tensor:
    """Maxima of consecutive blocks of ``BLOCK`` entries: rows [n, V] -> [n, ceil(V / BLOCK)] (one reduction)."""
    n, vocab = rows.shape
    whole = vocab - vocab % BLOCK
    maxima = rows[:, :whole].reshape(n, whole // BLOCK, BLOCK).amax(-1)  # [n, V // BLOCK]
    if whole == vocab:
        return maxima
    return torch.cat([maxima, rows[:, whole:].amax(-1, keepdim=True)], dim=-1)


def _ranked(values: torch.Tensor, count: int) -> torch.Tensor:
    """Positions of the ``count`` largest ``values`` [n, m], descending, ties by lower position: [n, count].

    ``torch.argmax`` returns the first position among ties (``torch.topk``
    promises no order among ties), so ``count`` rounds of argmax on the small
    tensors used here are exact.
    """
    remaining, positions = values.clone(), []
    for _ in range(count):  # count <= k - 1: a loop over drafts
        position = remaining.argmax(-1, keepdim=True)  # [n, 1]
        positions.append(position)
        remaining.scatter_(-1, position, -torch.inf)
    return torch.cat(positions, dim=-1) if positions else values.new_zeros((values.shape[0], 0), dtype=torch.int64)


def top_tokens(q: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` most likely tokens, q descending, ties by lower index: [..., V] -> [..., count].

    Two levels, one reduction over V.  Order tokens by (q descending, index
    ascending) and blocks by their best token, i.e. by (block maximum
    descending, block index ascending).  The top ``count`` tokens lie in the
    top ``count`` blocks: a token of a lower block is beaten by the best
    token of each of those ``count`` blocks.  So the blocks are ranked on
    their maxima, and the tokens on the entries of the chosen blocks, laid
    out by ascending index so that ties fall to the lower index.
    """
    vocab = q.shape[-1]
    rows = q.reshape(-1, vocab)  # [n, V]
    maxima = block_max(rows)  # [n, B]
    blocks = _ranked(maxima, min(count, maxima.shape[-1])).sort(dim=-1).values  # [n, c], ascending
    tokens = (blocks.unsqueeze(-1) * BLOCK + torch.arange(BLOCK, device=q.device)).flatten(1)  # [n, c * BLOCK]
    entries = rows.gather(-1, tokens.clamp_max(vocab - 1))
    entries = torch.where(tokens < vocab, entries, -1)  # past V (a short last block): below every q
    return tokens.gather(-1, _ranked(entries, count)).view(q.shape[:-1] + (count,))


def greedy(q: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Hu et al. (ICLR 2025) greedy drafts: the top k-1 tokens T, then x_k ~ q on V \\ T.

    If q(V \\ T) = 0 the last draft repeats x_1.  The last draw uses the
    block sums of q with T's blocks recounted without T (no copy of q).
    """
    vocab = q.shape[-1]
    rows = q.reshape(-1, vocab)  # [n, V]
    fixed = top_tokens(rows, k - 1)  # [n, k-1]
    sums = _recount(rows, block_sums(rows), fixed, fixed)  # [n, B], the block masses off T
    last, left = _draw(rows, sums, fixed, uniform((rows.shape[0],), rows, generator))  # [n], left = q(V \ T)
    if k > 1:
        last = torch.where(left > 0, last, fixed[:, 0])
    return torch.cat([fixed, last.unsqueeze(-1)], dim=-1).view(q.shape[:-1] + (k,))
