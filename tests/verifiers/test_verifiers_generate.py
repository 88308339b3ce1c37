"""The tree-level verifiers through ``generate`` on tiny random Llamas (vocabulary 8).

Chi-square tests of the first two generated tokens against the target's exact
sequence law (fixed seeds, significance 1e-4, 400 generations each), the
exact per-step expectation against the observed tokens per step, and bad
verifier / scheme / tree combinations refused before any model call, in
``generate`` and in ``multidraft generate --verifier``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multidraft.cli import main
from multidraft.decoding import generate
from multidraft.shapes import parse_shape, shape_depth
from tests.support.exact_law import assert_law, sequence_law, uncut

RUNS = 400
PROMPT = torch.tensor([[3, 1, 4]])
OPTIONS = {"top_k": 6, "top_p": 0.9}

LAW_CASES = [
    ("block", "sps", "1x3"),
    ("traversal", "rrs", "2x2"),
    ("traversal", "rrs", "3/1,0,2"),
    ("traversal-seq", "rrs-wor", "2x2"),
    ("traversal-seq", "spechub", "2x2"),
    ("traversal-seq", "greedy", "3,2"),
    ("traversal-seq", "topk", "3x2"),
    ("gbv", "rrs-wor", "2x2"),
    ("gbv", "rrs", "2/1,1"),
    ("traversal-ratio", "rrs-wor", "2x2"),
    ("traversal-ratio", "rrs", "2,1"),
    ("match", "topk", "1x3"),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("verifier", "scheme", "tree"), LAW_CASES)
def test_first_two_tokens_have_the_target_law(pair, verifier, scheme, tree):
    target, draft = pair
    law = sequence_law(target, PROMPT, 2, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(11)
    samples = [
        generate(
            target,
            draft,
            PROMPT,
            scheme=scheme,
            tree=tree,
            max_new_tokens=uncut(tree, 2),
            generator=generator,
            verifier=verifier,
            **OPTIONS,
        ).tokens
        for _ in range(RUNS)
    ]
    assert_law(samples, law)


@pytest.mark.parametrize(
    ("verifier", "scheme", "tree"), [("block", "sps", "1x4"), ("traversal", "rrs", "2x3"), ("match", "topk", "1x4")]
)
def test_exact_expected_tokens_match_the_observed_tokens_per_step(pair, verifier, scheme, tree):
    """sum_steps (a + 1 - E[a + 1 | tree]) is a martingale; its z-score uses the per-step bound (a + 1 <= D + 1)."""
    target, draft = pair
    result = generate(
        target,
        draft,
        PROMPT,
        scheme=scheme,
        tree=tree,
        max_new_tokens=200,
        verifier=verifier,
        generator=torch.Generator().manual_seed(3),
        exact_expectation=True,
        **OPTIONS,
    )
    observed = np.array(result.accepted_lengths) + 1.0
    expected = np.array(result.expected_tokens)
    depth = shape_depth(parse_shape(tree))
    z = (observed - expected).sum() / math.sqrt(len(observed) * (depth + 1) ** 2 / 4)
    assert abs(z) < 4, (observed.mean(), expected.mean())


@pytest.fixture()
def counted(pair):
    target, draft = pair
    calls = []
    handles = [model.register_forward_pre_hook(lambda *_: calls.append(1)) for model in (target, draft)]
    yield target, draft, calls
    for handle in handles:
        handle.remove()


BAD = [
    ("nope", "rrs", "2x2", "unknown verifier"),
    ("block", "rrs", "2x2", "chain"),
    ("block", "rrs", "2/1,0", "chain"),
    ("block", "spechub", "2x2", "chain"),
    ("traversal", "rrs-wor", "2x2", "iid only"),
    ("traversal", "spechub", "2x2", "iid only"),
    ("traversal", "topk", "1x3", "one draft per node"),
    ("traversal", "greedy", "2/1,0", "iid only"),
]


@pytest.mark.parametrize(("verifier", "scheme", "tree", "message"), BAD)
def test_bad_combinations_fail_before_any_model_call(counted, verifier, scheme, tree, message):
    target, draft, calls = counted
    with pytest.raises(ValueError, match=message):
        generate(target, draft, PROMPT, scheme=scheme, tree=tree, max_new_tokens=4, verifier=verifier)
    assert calls == []


@pytest.mark.parametrize(("verifier", "scheme", "tree", "message"), BAD)
def test_cli_refuses_bad_combinations_with_one_line_and_exit_code_2(verifier, scheme, tree, message, capsys):
    argv = [
        "generate",
        "--verifier",
        verifier,
        "--scheme",
        scheme,
        "--tree",
        tree,
        "--target",
        "/nonexistent/t",
        "--draft",
        "/nonexistent/d",
        "a prompt",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "nonexistent" not in err and err.count("\n") == 1
