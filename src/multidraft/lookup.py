"""Drafts copied from the text itself: the continuation of an earlier occurrence of its last tokens.

Prompt lookup (Saxena, 2023; the ``prompt_lookup_num_tokens`` of Hugging Face's ``generate``) drafts
without a draft model: if the committed text s_1..s_n ends with n-gram g = s_{n-m+1..n} and g also
occurs earlier, ending at position e < n, the drafts are s_{e+1}, s_{e+2}, ... .  Summaries copy their
source, code repeats its names and its prompt's code, so such a chain is often accepted for many tokens,
and it costs no draft forward at all: only the target's forward over the chain.

The chain is a function of the committed text alone, so its draft law is a point mass q = 1[x = c_d]
at each depth d, and any lossless verifier keeps the target's law with it: the token walk accepts
c_d with probability min(1, p(c_d) / 1) = p(c_d) and otherwise draws from the residual
(p - q)+ / (1 - p(c_d)), which is p with c_d removed (Leviathan et al., 2023, Algorithm 1, with a
one-hot q).
"""

from __future__ import annotations

import torch

#: Longest n-gram matched: the last LONGEST_MATCH tokens, else fewer, down to one.
LONGEST_MATCH = 3


def continuation(seq: torch.Tensor, depth: int, longest: int = LONGEST_MATCH) -> tuple[torch.Tensor, int]:
    """The up to ``depth`` tokens [d] that followed the latest earlier occurrence of the last m tokens of
    ``seq`` [n], for the largest m <= ``longest`` that occurs earlier, and m (empty and 0 where no token
    of the text occurred before its last)."""
    if depth < 0 or longest < 1:
        raise ValueError(f"a lookup needs depth >= 0 and n-grams of >= 1 token, got depth {depth}, longest {longest}")
    n = seq.shape[0]
    for m in range(min(longest, n - 1), 0, -1):
        windows = seq[:-1].unfold(0, m, 1)  # [n - m, m]: every m-gram that ends before the last token
        hits = (windows == seq[n - m :]).all(1).nonzero()
        if hits.numel():
            start = int(hits[-1]) + m  # the token after the latest earlier occurrence
            return seq[start : start + depth], m
    return seq[:0], 0
