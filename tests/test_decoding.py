"""End-to-end speculative decoding on tiny random Llamas: exact law, greedy, KV caches, theory, input errors.

The statistical tests use fixed seeds and significance 1e-4, so they are
deterministic; each draws 400 to 800 generations.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from multidraft import schemes, theory, verifiers
from multidraft.decoding import autoregressive, decode, generate
from multidraft.runners import TorchRunner
from multidraft.sampling_options import Sampling, probabilities
from multidraft.shapes import check_shape, parse_shape, shape_depth
from multidraft.step import TreePlan, draft_trees, score_trees
from multidraft.tree import Tree
from tests.support.exact_law import assert_law, sequence_law, uncut
from tests.support.models import VOCAB, tiny_llama

TREES = ("1x3", "2x2", "3x2")
PROMPT = torch.tensor([[3, 1, 4]])
OPTIONS = {"top_k": 6, "top_p": 0.9}
TOLERANCE = {"atol": 1e-4, "rtol": 0.0}


def fits(name: str, tree: str) -> bool:
    try:
        check_shape(parse_shape(tree), schemes.get(name))
    except ValueError:
        return False
    return True


#: Every (scheme, tree) pair whose branching the scheme accepts.
CASES = [(name, tree) for name in schemes.names() for tree in TREES if fits(name, tree)]
#: One tree per scheme: the widest it accepts.
WIDEST = {name: [tree for tree in TREES if fits(name, tree)][-1] for name in schemes.names()}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def deep_pair():
    """Two layers, for the mask and cache checks."""
    return tiny_llama(10, layers=2), tiny_llama(11, layers=2)


def full_logits(model, tokens) -> torch.Tensor:
    """Cache-free logits [n, V] of one sequence."""
    with torch.no_grad():
        return model(torch.as_tensor(tokens).reshape(1, -1)).logits[0]


# -- probabilities ---------------------------------------------------------------------------------------


def test_probabilities_temperature_top_k_top_p():
    logits = torch.tensor([[2.0, 1.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0, 5.0]])
    assert torch.equal(probabilities(logits, 0.0), torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]]))
    assert torch.allclose(probabilities(logits, 2.0), (logits / 2).softmax(-1))
    # top-k keeps ties at the threshold: the 2nd and 3rd logits tie.
    kept = probabilities(logits, 1.0, top_k=2)[0]
    assert (kept[3:] == 0).all()
    assert torch.allclose(kept[:3], torch.tensor([2.0, 1.0, 1.0]).softmax(-1))
    # top-p: softmax row 0 is [.52, .19, .19, .07, .03]; 0.5 is reached by the first token, 0.75 by three.
    assert (probabilities(logits, 1.0, top_p=0.5)[0] > 0).tolist() == [True, False, False, False, False]
    assert (probabilities(logits, 1.0, top_p=0.75)[0] > 0).tolist() == [True, True, True, False, False]
    assert (probabilities(logits, 1.0, top_p=0.95)[0] > 0).tolist() == [True, True, True, True, False]
    both = probabilities(logits, 0.5, top_k=3, top_p=0.99)
    assert torch.allclose(both.sum(-1), torch.ones(2))
    assert probabilities(logits.double(), 1.0).dtype == torch.float64
    for bad in [dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5), dict(temperature=math.nan)]:
        with pytest.raises(ValueError):
            probabilities(logits, **{"temperature": 1.0, **bad})


# -- masks, positions and caches on a real model ----------------------------------------------------


def node_paths(tree: Tree) -> list[list[int]]:
    """The tokens from the root's child down to each node (empty for the root)."""
    parents, tokens = tree.parents.tolist(), tree.tokens.tolist()
    paths = []
    for node in range(tree.size):
        path = []
        while node > 0:
            path.append(tokens[node])
            node = parents[node]
        paths.append(path[::-1])
    return paths


def example_tree(root: int) -> Tree:
    tree = Tree.from_root(root)
    tree.grow(torch.tensor([[5, 2, 5]]))
    tree.grow(torch.tensor([[1, 7], [7, 7]]))
    tree.grow(torch.tensor([[0], [6], [3]]))
    return tree


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_tree_forward_matches_each_path_recomputed(attention):
    """Every node's target logits equal a cache-free forward over prompt + its path, with and without a cache."""
    target = tiny_llama(20, layers=2, attention=attention)
    seq = torch.tensor([3, 1, 4, 1, 5])
    tree = example_tree(int(seq[-1]))
    for cached in [0, 2, 4]:  # the tree pass also reads seq[cached:] causally
        runner = TorchRunner(target)
        if cached:
            target(seq[:cached][None], cache=runner.cache, use_cache=True)
        [logits], _, _ = score_trees(runner, seq, [tree])
        assert runner.cached() == seq.shape[0] - 1 + tree.size
        for node, path in enumerate(node_paths(tree)):
            expected = full_logits(target, seq.tolist() + path)[-1]
            torch.testing.assert_close(logits[node], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(3, 2, 2), parse_shape("2/1,3/2,0,1,0")])
def test_draft_tree_reads_each_level_with_the_tree_mask(deep_pair, shape):
    _, draft = deep_pair
    seq = torch.tensor([2, 7, 1, 6])
    sampling = Sampling(1.0, None, None, seq.device, torch.float32)
    runner = TorchRunner(draft)
    generator = torch.Generator().manual_seed(1)
    [tree], [q], [logits], _, _ = draft_trees(
        runner, seq, [TreePlan(schemes.get("rrs-wor"), shape, generator)], sampling
    )
    assert tree.depth == 3 and logits.shape == q.shape == (tree.n_internal, VOCAB)
    assert runner.cached() == seq.shape[0] - 1 + tree.n_internal  # the last level is never read
    torch.testing.assert_close(q, logits.softmax(-1))
    for node, path in enumerate(node_paths(tree)[: tree.n_internal]):
        torch.testing.assert_close(logits[node], full_logits(draft, seq.tolist() + path)[-1], atol=1e-5, rtol=1e-5)


def test_keep_path_moves_the_path_behind_the_prefix():
    runner = TorchRunner(tiny_llama(0))
    cache = runner.cache
    keys = torch.arange(10.0).reshape(1, 1, 10, 1).expand(1, 2, 10, 3)
    for layer in range(2):
        cache.update(keys.clone(), -keys.clone(), layer)
    runner.keep_path(4, [5, 8])
    for layer in cache.layers:
        assert layer.keys[0, 1, :, 0].tolist() == [0, 1, 2, 3, 5, 8]
        assert layer.values[0, 0, :, 2].tolist() == [0, -1, -2, -3, -5, -8]
    runner.keep_path(3, [])
    assert cache.get_seq_length() == 3


# -- the exact sequence law ------------------------------------------------------------------------


RUNS = 400

#: kseq (bisection for rho*) and otm (a linear program) verify in ~15 ms per node: one tree each.
SLOW = {"kseq", "otm"}
#: Every scheme x fitting tree x temperature (0.7, 1), the slow schemes at their widest tree; top-k and top-p on.
LAW_CASES = [
    (name, tree, temperature)
    for name, tree in CASES
    if name not in SLOW or tree == WIDEST[name]
    for temperature in (0.7, 1.0)
]


@pytest.mark.parametrize(("name", "tree", "temperature"), LAW_CASES)
def test_first_two_tokens_have_the_target_law(pair, name, tree, temperature):
    target, draft = pair
    law = sequence_law(target, PROMPT, 2, temperature=temperature, **OPTIONS)
    generator = torch.Generator().manual_seed(1)
    samples = [
        generate(
            target,
            draft,
            PROMPT,
            scheme=name,
            tree=tree,
            max_new_tokens=uncut(tree, 2),
            temperature=temperature,
            generator=generator,
            **OPTIONS,
        ).tokens
        for _ in range(RUNS)
    ]
    assert_law(samples, law)


def test_first_three_tokens_have_the_target_law(pair):
    """Three tokens through a deeper tree: the law over 512 sequences."""
    target, draft = pair
    law = sequence_law(target, PROMPT, 3, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(3)
    samples = [
        generate(
            target, draft, PROMPT, scheme="rrs", tree="2,2,1", max_new_tokens=4, generator=generator, **OPTIONS
        ).tokens
        for _ in range(800)
    ]
    assert_law(samples, law)


#: Per-node templates: nodes of one level with different draft counts, leaves above the last level.
TEMPLATE_CASES = [("rrs", "3/2,0,1"), ("greedy", "2/3,2"), ("spechub", "2/0,2"), ("rrs-wor", "3/2,0,1/1,1,0")]


@pytest.mark.parametrize(("name", "tree"), TEMPLATE_CASES)
def test_template_trees_keep_the_target_law(pair, name, tree):
    """The first tokens through general per-node trees (three tokens through the deepest)."""
    target, draft = pair
    length = min(3, shape_depth(parse_shape(tree)) + 1)
    law = sequence_law(target, PROMPT, length, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(6)
    runs = 800 if length == 3 else RUNS
    samples = [
        generate(
            target,
            draft,
            PROMPT,
            scheme=name,
            tree=tree,
            max_new_tokens=uncut(tree, length),
            generator=generator,
            **OPTIONS,
        ).tokens
        for _ in range(runs)
    ]
    assert_law(samples, law)


def test_autoregressive_has_the_target_law(pair):
    target, _ = pair
    law = sequence_law(target, PROMPT, 2, temperature=0.7, **OPTIONS)
    generator = torch.Generator().manual_seed(4)
    samples = [
        autoregressive(target, PROMPT, max_new_tokens=2, temperature=0.7, generator=generator, **OPTIONS).tokens
        for _ in range(RUNS)
    ]
    assert_law(samples, law)


# -- greedy ------------------------------------------------------------------------------------------------


def greedy_reference(model, prompt: torch.Tensor, length: int) -> list[int]:
    tokens = prompt.reshape(-1).tolist()
    for _ in range(length):
        tokens.append(int(full_logits(model, tokens)[-1].argmax()))
    return tokens[prompt.numel() :]


@pytest.mark.parametrize(("name", "tree"), [(name, WIDEST[name]) for name in schemes.names()] + [("rrs", "1x3")])
def test_temperature_0_reproduces_the_greedy_output(deep_pair, name, tree):
    target, draft = deep_pair
    expected = greedy_reference(target, PROMPT, 32)
    result = generate(target, draft, PROMPT, scheme=name, tree=tree, max_new_tokens=32, temperature=0.0, **OPTIONS)
    assert result.tokens == expected
    assert autoregressive(target, PROMPT, max_new_tokens=32, temperature=0.0).tokens == expected


# -- KV caches -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tree"),
    [(name, WIDEST[name]) for name in schemes.names()] + [("rrs", "2,3,1,2"), ("rrs-wor", "3/2,0,1/1,1,0")],
)
def test_cached_logits_equal_a_full_recomputation(deep_pair, name, tree):
    """At every emitted position the target (and draft) logits equal a cache-free pass over the final sequence."""
    target, draft = deep_pair
    depth = shape_depth(parse_shape(tree))
    result = generate(
        target,
        draft,
        PROMPT,
        scheme=name,
        tree=tree,
        max_new_tokens=64,
        generator=torch.Generator().manual_seed(5),
        record=True,
    )
    assert len(result.tokens) == 64
    sequence = PROMPT.reshape(-1).tolist() + result.tokens
    start = PROMPT.numel() - 1
    expected_target, expected_draft = full_logits(target, sequence), full_logits(draft, sequence)
    emitted = 0
    for step in result.trace:  # row start + i of the full pass predicted new token i
        count = min(step.target_logits.shape[0], 64 - emitted)
        verified = min(step.draft_logits.shape[0], count)
        rows = start + emitted
        torch.testing.assert_close(step.target_logits[:count], expected_target[rows : rows + count], **TOLERANCE)
        torch.testing.assert_close(step.draft_logits[:verified], expected_draft[rows : rows + verified], **TOLERANCE)
        emitted += count
    assert emitted == 64
    # The run went through rejections at the root and inside the tree, and through leaves.
    assert 0 in result.accepted_lengths and depth in result.accepted_lengths
    assert any(0 < a < depth for a in result.accepted_lengths)


# -- metrics against the token-level theory ---------------------------------------------------------


@pytest.mark.parametrize("name", schemes.names())
def test_accepted_length_matches_the_exact_per_node_acceptance(pair, name):
    """sum_steps a - sum_{verified nodes v} alpha(p_v, q_v, k_v) is a zero-mean martingale.

    At a node reached by the walk its drafts are fresh draws from the draft
    law, so it accepts with probability exactly alpha_v (theory.acceptance).
    The z-score of the total uses the variance sum alpha_v (1 - alpha_v).
    """
    target, draft = pair
    tree = WIDEST[name]
    shape = parse_shape(tree)
    options = dict(temperature=1.0, **OPTIONS)
    accepted = predicted = variance = 0.0
    for seed in range(2):
        result = generate(
            target,
            draft,
            PROMPT,
            scheme=name,
            tree=tree,
            max_new_tokens=150,
            generator=torch.Generator().manual_seed(100 + seed),
            record=True,
            **options,
        )
        accepted += sum(result.accepted_lengths)
        for step in result.trace:
            p = probabilities(step.target_logits, **options).double()
            q = probabilities(step.draft_logits, **options).double()
            for depth in range(step.draft_logits.shape[0]):
                alpha = theory.acceptance(name, p[depth].numpy(), q[depth].numpy(), shape[depth])
                predicted += alpha
                variance += alpha * (1 - alpha)
        assert result.block_efficiency == result.tokens_emitted / result.target_calls
    z = (accepted - predicted) / math.sqrt(variance)
    assert abs(z) < 4.5, f"accepted {accepted} drafts, theory predicts {predicted:.1f} (z = {z:.2f})"


def test_metrics_streaming_and_eos(pair):
    target, draft = pair
    streamed: list[int] = []
    result = generate(
        target,
        draft,
        PROMPT,
        scheme="rrs",
        tree="3x2",
        max_new_tokens=41,
        generator=torch.Generator().manual_seed(6),
        on_tokens=streamed.extend,
        **OPTIONS,
    )
    assert streamed == result.tokens and result.tokens_emitted == len(result.tokens) == 41
    assert result.target_calls == len(result.accepted_lengths)
    # two draft forwards a step (the root, depth 1), fewer where the tree is cut to the tokens still wanted
    wanted = [41 - sum(a + 1 for a in result.accepted_lengths[:i]) for i in range(result.target_calls)]
    assert result.draft_calls == sum(min(2, w - 1) for w in wanted) < 2 * result.target_calls
    assert result.block_efficiency == 41 / result.target_calls > 1
    assert sum(a + 1 for a in result.accepted_lengths) >= 41
    reached = [sum(a >= d for a in result.accepted_lengths) for d in range(3)]
    assert result.acceptance_per_depth == [reached[1] / reached[0], reached[2] / reached[1]]
    seconds = (result.draft_seconds, result.target_seconds, result.verification_seconds)
    assert min(seconds) > 0 and sum(seconds) <= result.total_seconds + 1e-6
    assert len(result.step_seconds) == result.target_calls and min(result.step_seconds) > 0
    assert sum(result.step_seconds) == pytest.approx(result.total_seconds, rel=1e-9)
    # The same seed with EOS tokens stops right after the first one; ids outside the vocabulary never occur.
    eos = result.tokens[5]
    stop = result.tokens.index(eos) + 1
    for eos_token_id in [eos, (VOCAB + 3, eos)]:
        again = generate(
            target,
            draft,
            PROMPT,
            scheme="rrs",
            tree="3x2",
            max_new_tokens=41,
            generator=torch.Generator().manual_seed(6),
            eos_token_id=eos_token_id,
            **OPTIONS,
        )
        assert again.tokens == result.tokens[:stop]
    baseline = autoregressive(target, PROMPT, max_new_tokens=7, generator=torch.Generator().manual_seed(0))
    assert (len(baseline.tokens), baseline.target_calls, baseline.block_efficiency) == (7, 7, 1.0)


def test_no_draft_past_the_tokens_wanted(pair):
    """A draft equal to the target has every draft accepted: a chain of 8 asked for 5 tokens drafts 4 and
    emits 5 in one step; the last step of a longer run drafts only what is still wanted."""
    target, _ = pair
    once = generate(target, target, PROMPT, scheme="sps", tree="1x8", max_new_tokens=5, **OPTIONS)
    assert (once.tree_sizes, once.accepted_lengths, once.draft_calls, len(once.tokens)) == ([5], [4], 4, 5)
    longer = generate(target, target, PROMPT, scheme="sps", tree="1x8", max_new_tokens=12, **OPTIONS)
    assert (longer.tree_sizes, longer.accepted_lengths, longer.draft_calls) == ([9, 3], [8, 2], 8 + 2)
    plain_end = generate(target, target, PROMPT, scheme="sps", tree="1x8", max_new_tokens=10, **OPTIONS)
    assert plain_end.tree_sizes == [9, 1] and len(plain_end.tokens) == 10


def test_same_seed_same_tokens(pair):
    target, draft = pair
    runs = [
        generate(target, draft, PROMPT, scheme="spechub", tree="2x2", max_new_tokens=20, generator=generator).tokens
        for generator in [torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)]
    ]
    assert runs[0] == runs[1]


# -- bad input: ValueError before any model call ---------------------------------------------------


@pytest.fixture()
def counted(pair):
    """The pair with a forward counter; yields (target, draft, calls)."""
    target, draft = pair
    calls = []
    handles = [model.register_forward_pre_hook(lambda *_: calls.append(1)) for model in (target, draft)]
    yield target, draft, calls
    for handle in handles:
        handle.remove()


BAD = {
    "unknown scheme": dict(scheme="nope"),
    "sps needs k = 1": dict(scheme="sps", tree="2x2"),
    "spechub needs k = 2": dict(scheme="spechub", tree="2,3"),
    "bad tree": dict(tree="2y2"),
    "no new tokens": dict(max_new_tokens=0),
    "fractional tokens": dict(max_new_tokens=2.5),
    "negative temperature": dict(temperature=-0.5),
    "top_k 0": dict(top_k=0),
    "top_p 0": dict(top_p=0.0),
    "too long": dict(max_new_tokens=252),  # 3 + 252 + 2 > 256 positions
    "batch of 2": dict(input_ids=torch.tensor([[1, 2], [3, 4]])),
    "empty prompt": dict(input_ids=torch.tensor([[]], dtype=torch.int64)),
    "token out of range": dict(input_ids=torch.tensor([[1, VOCAB]])),
    "more top tokens than the vocabulary": dict(scheme="greedy", tree=f"{VOCAB + 1}x1"),
    "template with more top-k drafts than tokens": dict(scheme="topk", tree=f"2/1,{VOCAB + 1}"),
    "bad template": dict(tree="2/1"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_fails_before_any_model_call(counted, case):
    target, draft, calls = counted
    kwargs = {"input_ids": PROMPT, "scheme": "rrs", "tree": "2x2", "max_new_tokens": 4, **BAD[case]}
    with pytest.raises(ValueError):
        generate(target, draft, kwargs.pop("input_ids"), **kwargs)
    assert calls == []


def test_vocabulary_mismatch_fails_before_any_model_call(counted):
    target, _, calls = counted
    other = tiny_llama(3, vocab=VOCAB + 1)
    with pytest.raises(ValueError, match="vocabularies differ"):
        generate(target, other, PROMPT, scheme="rrs", tree="2x2", max_new_tokens=4)
    assert calls == []


def test_sliding_window_shorter_than_the_sequence_is_refused():
    config = MistralConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        max_position_embeddings=256,
        sliding_window=8,
    )
    model = MistralForCausalLM(config).eval()
    with pytest.raises(ValueError, match="sliding"):
        generate(model, model, PROMPT, scheme="rrs", tree="2x2", max_new_tokens=20)
    assert len(generate(model, model, PROMPT, scheme="rrs", tree="2x2", max_new_tokens=3).tokens) == 3


def test_autoregressive_bad_input(counted):
    target, _, calls = counted
    for kwargs in [dict(max_new_tokens=0), dict(max_new_tokens=4, top_p=2.0), dict(max_new_tokens=300)]:
        with pytest.raises(ValueError):
            autoregressive(target, PROMPT, **kwargs)
    with pytest.raises(ValueError, match="batch"):
        autoregressive(target, torch.zeros(2, 3, dtype=torch.int64), max_new_tokens=2)
    assert calls == []


#: Confidence stops: τ high enough that trees often end early on the tiny models.
STOP_CASES = [("sps", "1,1,1", 0.3), ("rrs", "2,2,1", 0.25)]


@pytest.mark.parametrize(("name", "tree", "tau"), STOP_CASES)
def test_confidence_stops_keep_the_target_law(pair, name, tree, tau):
    """Trees whose depth depends on the draft's own probabilities: three tokens keep the target's law."""
    target, draft = pair
    law = sequence_law(target, PROMPT, 3, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(8)
    results = [
        generate(
            target,
            draft,
            PROMPT,
            scheme=name,
            tree=tree,
            max_new_tokens=4,  # the first step drafts the whole tree; the law reads three tokens
            generator=generator,
            min_draft_probability=tau,
            **OPTIONS,
        )
        for _ in range(800)
    ]
    sizes = Counter(r.tree_sizes[0] for r in results)  # first steps: cut by the stop rule only
    full = 1 + sum(math.prod(parse_shape(tree)[:d]) for d in range(1, 4))
    assert len(sizes) > 1 and max(sizes) <= full and sizes[full] < sum(sizes.values())  # the stop cut trees
    assert_law([r.tokens for r in results], law)


def test_confidence_stop_is_checked(pair):
    target, draft = pair
    for tau, verifier, message in [
        (1.0, "token", r"in \[0, 1\)"),
        (-0.1, "token", r"in \[0, 1\)"),
        (0.3, "block", "only the token walk"),
    ]:
        with pytest.raises(ValueError, match=message):
            generate(
                target,
                draft,
                PROMPT,
                scheme="sps",
                tree="1x3",
                max_new_tokens=3,
                verifier=verifier,
                min_draft_probability=tau,
            )


@pytest.mark.parametrize("verifier", ["token", "block"])
def test_copied_drafts_keep_the_target_law(pair, verifier):
    """Steps alternating between a chain copied from the text and a drafted one (the draft then reads what it
    missed): the first three tokens keep the target's law under either verifier."""
    target, draft = pair
    prompt = torch.tensor([3, 1, 4, 1, 5, 3, 1])  # ends with "3 1", which occurred before: copies "4 1 5"
    law = sequence_law(target, prompt, 3, temperature=1.0, **OPTIONS)
    generator = torch.Generator().manual_seed(9)
    sps = schemes.get("sps")
    plans = [TreePlan(sps, (1, 1, 1), generator, lookup=True), TreePlan(sps, (1, 1), generator)]
    sampling = Sampling.for_runners(1.0, OPTIONS["top_k"], OPTIONS["top_p"], TorchRunner(target), TorchRunner(draft))
    samples, copied = [], 0
    for _ in range(800):
        tokens, steps, _ = decode(
            TorchRunner(target),
            TorchRunner(draft),
            prompt,
            lambda seq, steps: plans[len(steps) % 2],
            sampling,
            verifiers.get(verifier),
            generator,
            max_new_tokens=4,
            stop=frozenset(),
        )
        samples.append(tokens)
        copied += sum(step.accepted for step in steps[::2])
    assert copied > 100, "the test should see copied drafts accepted"
    assert_law(samples, law)
