"""Through the decoder, with llama.cpp runners as target and draft, the first tokens follow the target's law.

The target's exact law of its next tokens is computed from the llama.cpp
target itself (every prefix decoded alone, float64 from there on): the law
the decoder must reproduce, "the target as llama.cpp computes it".  Samples
are compared with it by a chi-square test with fixed seeds (deterministic).
Target and draft are tiny GGUF models with different random weights.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.usefixtures("one_thread")  # torch's thread pool and llama.cpp's would contend

from multidraft.decoding import autoregressive, generate  # noqa: E402
from multidraft.runners.llama import LlamaRunner  # noqa: E402
from multidraft.runners.subvocabulary import write_subvocabulary  # noqa: E402
from multidraft.sampling_options import probabilities  # noqa: E402
from tests.support.exact_law import assert_law, uncut  # noqa: E402
from tests.support.llama_gguf import write_tiny_llama  # noqa: E402
from tests.support.models import VOCAB  # noqa: E402

PROMPT = torch.tensor([[3, 1, 4]])
OPTIONS = {"top_k": 6, "top_p": 0.95}
RUNS = 400
#: Output-layer gain: next-token laws spread over the vocabulary, but uneven.
GAIN = 1.0
#: (scheme, tree, verifier, temperature): the token walk, a sequence-level verifier, and llama.cpp's own rule.
CASES = [
    ("rrs", "2,2", "token", 1.0),
    ("spechub", "2x2", "traversal-seq", 0.7),
    ("sps", "1x3", "block", 1.0),
    ("topk", "1x3", "match", 1.0),
]


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    target, draft = (
        LlamaRunner(
            write_tiny_llama(folder / f"{name}.gguf", vocab=VOCAB, seed=seed, output_gain=GAIN),
            threads=1,
            context=64,
            sequences=8,
        )
        for name, seed in (("target", 0), ("draft", 1))
    )
    yield target, draft
    target.close()
    draft.close()


def llama_sequence_law(target: LlamaRunner, prompt: torch.Tensor, length: int, **options) -> np.ndarray:
    """The llama.cpp target's exact law of its next ``length`` tokens, float64 [V ** length]."""
    law = np.ones(1)
    for depth in range(length):
        rows = []
        for prefix in itertools.product(range(VOCAB), repeat=depth):
            sequence = torch.cat([prompt.reshape(-1), torch.tensor(prefix, dtype=torch.int64)])
            target.reset()
            n = sequence.shape[0]
            logits = target.forward(sequence, torch.arange(n), torch.ones(n, n, dtype=torch.bool).tril(), 1)
            rows.append(probabilities(logits, **options).double().numpy()[0])
        law = (law[:, None] * np.stack(rows)).reshape(-1)
    return law / law.sum()


def test_the_target_law_is_spread_enough_to_test(runners):
    law = llama_sequence_law(runners[0], PROMPT, 1, temperature=1.0, **OPTIONS)
    assert (law > 0.02).sum() >= 4 and law.max() < 0.8


@pytest.mark.parametrize(("scheme", "tree", "verifier", "temperature"), CASES)
def test_first_two_tokens_have_the_llama_cpp_target_law(runners, scheme, tree, verifier, temperature):
    target, draft = runners
    law = llama_sequence_law(target, PROMPT, 2, temperature=temperature, **OPTIONS)
    generator = torch.Generator().manual_seed(11)
    samples = [
        generate(
            target,
            draft,
            PROMPT,
            scheme=scheme,
            tree=tree,
            verifier=verifier,
            max_new_tokens=uncut(tree, 2),
            temperature=temperature,
            generator=generator,
            **OPTIONS,
        ).tokens
        for _ in range(RUNS)
    ]
    assert_law(samples, law)


def test_first_three_tokens_through_a_deeper_tree(runners):
    target, draft = runners
    law = llama_sequence_law(target, PROMPT, 3, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(12)
    samples = [
        generate(
            target, draft, PROMPT, scheme="rrs", tree="3,2,1", max_new_tokens=4, generator=generator, **OPTIONS
        ).tokens
        for _ in range(800)
    ]
    assert_law(samples, law)


def test_plain_sampling_on_llama_cpp_has_the_target_law(runners):
    target, _ = runners
    law = llama_sequence_law(target, PROMPT, 2, temperature=0.7, **OPTIONS)
    generator = torch.Generator().manual_seed(13)
    samples = [
        autoregressive(target, PROMPT, max_new_tokens=2, temperature=0.7, generator=generator, **OPTIONS).tokens
        for _ in range(RUNS)
    ]
    assert_law(samples, law)


def test_a_torch_draft_can_serve_a_llama_cpp_target(runners):
    """The engines mix: a Hugging Face draft over the same vocabulary drafts for the llama.cpp target."""
    from tests.support.models import tiny_llama

    target, _ = runners
    law = llama_sequence_law(target, PROMPT, 2, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(14)
    draft = tiny_llama(1)
    samples = [
        generate(
            target, draft, PROMPT, scheme="rrs", tree="2,2", max_new_tokens=3, generator=generator, **OPTIONS
        ).tokens
        for _ in range(RUNS)
    ]
    assert_law(samples, law)


def test_a_draft_cut_to_a_sub_vocabulary_keeps_the_target_law(runners, tmp_path):
    """q = 0 outside the draft's sub-vocabulary: verification still gives the target's law."""
    target, _ = runners
    cut = write_subvocabulary(runners[1].path, tmp_path / "cut.gguf", keep=5)
    law = llama_sequence_law(target, PROMPT, 2, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(15)
    with LlamaRunner(cut, threads=1, context=64, sequences=8) as draft:
        assert draft.vocab_size == VOCAB
        samples = [
            generate(
                target, draft, PROMPT, scheme="rrs", tree="2,2", max_new_tokens=3, generator=generator, **OPTIONS
            ).tokens
            for _ in range(RUNS)
        ]
    assert_law(samples, law)
