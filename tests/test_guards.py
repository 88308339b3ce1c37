"""NaN or infinite logits from either model stop every path with an error naming the model, step and position."""

from __future__ import annotations

import math

import pytest
import torch

from multidraft.bench.recording import record
from multidraft.decoding import autoregressive, generate
from multidraft.guards import NonFiniteLogits, check_finite
from tests.support.models import tiny_llama

PROMPT = torch.tensor([3, 1, 4])  # positions 0..2: step 1 reads the root at position 2


def corrupt_call(model, call: int, value: float, row: int = 0):
    """Set logit 5 of ``row`` to ``value`` in the ``call``-th forward of ``model`` (1-based)."""
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] == call:
            output.logits[0, row, 5] = value
        return output

    return model.register_forward_hook(hook)


def test_check_finite_names_the_first_bad_entry_and_ignores_an_overflowing_sum():
    logits = torch.zeros(3, 4)
    logits[1, 2], logits[2, 0] = math.inf, math.nan
    with pytest.raises(NonFiniteLogits, match=r"^draft model produced \+inf logits at step 7, position 11 \(tree node 4\); "
                       r"2 of 12 logits are not finite"):
        check_finite(logits, "draft", [10, 11, 12], at="step 7", nodes=[3, 4, 5])
    check_finite(torch.full((2, 4), 3e38), "target", [0, 1], at="step 1")  # the float32 sum is inf, every entry finite


@pytest.mark.parametrize("role", ["target", "draft"])
def test_nan_output_layer_fails_generate_at_the_first_step(role):
    target, draft = tiny_llama(0), tiny_llama(1)
    with torch.no_grad():
        (target if role == "target" else draft).lm_head.weight[5] = math.nan
    with pytest.raises(NonFiniteLogits, match=rf"^{role} model produced NaN logits at step 1, position 2 \(tree node 0\)"):
        generate(target, draft, PROMPT, scheme="rrs", tree="2x2", max_new_tokens=8, generator=torch.Generator())


def test_a_later_step_and_tree_node_are_named():
    target, draft = tiny_llama(0), tiny_llama(1)
    generator = torch.Generator().manual_seed(0)
    clean = generate(target, draft, PROMPT, scheme="rrs", tree="1x1", max_new_tokens=8, generator=generator)
    # tree 1x1: step s scores the root and its one child; the root's position is len(prompt) - 1 + tokens before.
    root = len(PROMPT) - 1 + sum(a + 1 for a in clean.accepted_lengths[:2])
    handle = corrupt_call(target, call=3, value=-math.inf, row=-1)
    try:
        with pytest.raises(NonFiniteLogits, match=rf"^target model produced -inf logits at step 3, position {root + 1} "
                           r"\(tree node 1\)"):
            generate(target, draft, PROMPT, scheme="rrs", tree="1x1", max_new_tokens=8, generator=generator.manual_seed(0))
    finally:
        handle.remove()
    handle = corrupt_call(draft, call=2, value=math.inf)  # step 1's second draft forward: the depth-1 node
    try:
        with pytest.raises(NonFiniteLogits, match=r"^draft model produced \+inf logits at step 1, position 3 \(tree node 1\)"):
            generate(target, draft, PROMPT, scheme="rrs", tree="1x2", max_new_tokens=8, generator=torch.Generator())
    finally:
        handle.remove()


def test_autoregressive_and_record_refuse_nan():
    target, draft = tiny_llama(0), tiny_llama(1)
    handle = corrupt_call(target, call=4, value=math.nan)
    try:
        with pytest.raises(NonFiniteLogits, match=r"^target model produced NaN logits at step 4, position 5;"):
            autoregressive(target, PROMPT, max_new_tokens=6, generator=torch.Generator())
    finally:
        handle.remove()
    # record reads the draft as the decoder does: prompt 0 (3 tokens, 3 new) in calls 1-3, prompt 1 (2 tokens)
    # in calls 4 (its prompt, position 1), 5 (position 2) and 6 (position 3)
    handle = corrupt_call(draft, call=6, value=math.nan)
    try:
        with pytest.raises(NonFiniteLogits, match=r"^draft model produced NaN logits at prompt 1, position 3;"):
            record(target, draft, [PROMPT, PROMPT[:2]], temperature=1.0, top_k=None, top_p=None, new_tokens=3,
                   top_n=4, seed=0, header={})
    finally:
        handle.remove()
