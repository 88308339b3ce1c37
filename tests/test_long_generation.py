"""Long generations: after 1,024 tokens the cached logits still equal a cache-free forward, and memory stays flat."""

from __future__ import annotations

import os

import torch

from multidraft.decoding import autoregressive, generate
from tests.support.models import tiny_llama

PROMPT = torch.tensor([3, 1, 4, 1, 5])
NEW_TOKENS = 1024


def logits_rows(trace, prompt_length: int) -> tuple[list[int], torch.Tensor, list[int], torch.Tensor]:
    """Where each recorded row sits: (indices, target rows, indices, draft rows).

    Row j of a step predicts the step's j-th token, so it is the output at
    index (tokens before it) - 1 of a forward over the whole sequence.
    """
    target_at, draft_at, before = [], [], prompt_length
    for step in trace:
        target_at += range(before - 1, before - 1 + len(step.target_logits))
        draft_at += range(before - 1, before - 1 + len(step.draft_logits))
        before += len(step.target_logits)
    target = torch.cat([step.target_logits for step in trace])
    draft = torch.cat([step.draft_logits for step in trace])
    return target_at, target, draft_at, draft


def assert_rows_match(model, sequence: list[int], at: list[int], rows: torch.Tensor) -> None:
    with torch.no_grad():
        fresh = model(torch.tensor([sequence])).logits[0]  # [len(sequence), V], no cache
    kept = [i for i, index in enumerate(at) if index < len(sequence)]
    assert at[kept[-1]] >= NEW_TOKENS  # the check reaches past position 1,024
    torch.testing.assert_close(rows[kept], fresh[[at[i] for i in kept]], atol=1e-4, rtol=0)


def test_cached_logits_equal_a_cache_free_forward_up_to_1024_tokens():
    target = tiny_llama(20, layers=2, vocab=64, max_positions=1100)
    draft = tiny_llama(21, layers=2, vocab=64, max_positions=1100)
    result = generate(target, draft, PROMPT, scheme="rrs", tree="2x3", max_new_tokens=NEW_TOKENS, record=True,
                      generator=torch.Generator().manual_seed(0))
    sequence = PROMPT.tolist() + result.tokens
    target_at, target_rows, draft_at, draft_rows = logits_rows(result.trace, len(PROMPT))
    assert_rows_match(target, sequence, target_at, target_rows)
    assert_rows_match(draft, sequence, draft_at, draft_rows)

    baseline = autoregressive(target, PROMPT, max_new_tokens=NEW_TOKENS, record=True,
                              generator=torch.Generator().manual_seed(0))
    at, rows, _, _ = logits_rows(baseline.trace, len(PROMPT))
    assert_rows_match(target, PROMPT.tolist() + baseline.tokens, at, rows)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_flat_over_a_long_generation():
    """Resident memory between a quarter of the way and the end grows by less than 16 MiB.

    A step's tree, masks and logits ([N, 4096] float32, ~250 KiB for 2x3)
    kept by mistake would add ~80 MiB over the ~300 remaining steps; the KV
    caches that legitimately grow hold 2 x 2 layers x 2 x 16 floats per token,
    about 0.3 MiB in all.
    """
    target = tiny_llama(30, layers=2, vocab=4096, max_positions=1100)
    draft = tiny_llama(31, layers=2, vocab=4096, max_positions=1100)
    samples = []
    result = generate(target, draft, PROMPT, scheme="rrs", tree="2x3", max_new_tokens=NEW_TOKENS,
                      generator=torch.Generator().manual_seed(0), on_tokens=lambda tokens: samples.append(resident_bytes()))
    assert len(result.tokens) == NEW_TOKENS
    growth = samples[-1] - samples[len(samples) // 4]
    assert growth < 16 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB over {len(samples) * 3 // 4} steps"
