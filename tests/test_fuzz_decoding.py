"""Fuzzing the decoder (hypothesis) on tiny random models: every scheme, verifier, tree, sampling option and stop rule.

Each example builds a random target/draft pair (vocabulary 2-12, one or two
layers) and generates once, with a uniform tree ("k1,k2,..") or a per-node
template ("3/2,0,1/.."), and a verifier that accepts the pair.  Whatever
the inputs, a run must satisfy:

* 1 <= len(output) <= max_new_tokens; the output ends right after its first
  EOS token if it has one, and has exactly max_new_tokens tokens if not;
* every token lies in the vocabulary;
* the KV caches hold exactly the committed tokens but the last: the target's
  every one (the prompt plus all tokens of every walk, before the output was
  cut), the draft's too or one fewer (a leaf it never read); their entries
  equal a cache-free forward over those tokens (1e-4);
* at temperature 0 the output is the target's greedy continuation.

The examples are derandomized (a fixed seed derived from the test) and
capped, so the test is deterministic and takes seconds.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multidraft import decoding, schemes, verifiers
from multidraft.limits import max_nodes
from multidraft.runners import TorchRunner
from multidraft.shapes import parse_shape
from tests.support.models import tiny_llama

EXAMPLES = 150


def allowed_k(name: str) -> list[int]:
    """The draft counts 1..3 the scheme accepts (otm solves a linear program per node: at most 2)."""
    scheme, ks = schemes.get(name), []
    for k in range(1, 3 if name == "otm" else 4):
        try:
            scheme.check_k(k)
            ks.append(k)
        except ValueError:
            pass
    return ks


@st.composite
def trees(draw, ks: list[int]) -> str:
    """A uniform shape of depth 1-3, or a template of depth 2-3 whose nodes draw 0 or one of ``ks`` drafts."""
    if draw(st.sampled_from(["template", "uniform"])) == "uniform":
        return ",".join(str(k) for k in draw(st.lists(st.sampled_from(ks), min_size=1, max_size=3)))
    levels = [[draw(st.sampled_from(ks))]]
    for _ in range(draw(st.integers(1, 2))):
        level = draw(st.lists(st.sampled_from([0, *ks]), min_size=sum(levels[-1]), max_size=sum(levels[-1])))
        if sum(level) == 0:
            break
        levels.append(level)
    return "/".join(",".join(map(str, level)) for level in levels)


def accepting(shape, scheme) -> list[str]:
    """The verifiers that take this scheme on this tree."""
    names = []
    for name in verifiers.names():
        try:
            verifiers.get(name).check(shape, scheme)
            names.append(name)
        except ValueError:
            pass
    return names


@st.composite
def runs(draw):
    """A model pair, a prompt and every argument of one :func:`multidraft.decoding.generate` call."""
    vocab = draw(st.integers(2, 12))
    name = draw(st.sampled_from(schemes.names()))
    # greedy and topk draw k distinct top tokens: a request with k > V is refused before any model call
    ks = [k for k in allowed_k(name) if schemes.get(name).draft_law not in ("greedy", "topk") or k <= vocab]
    tree = draw(trees(ks))
    eos = draw(
        st.one_of(st.none(), st.integers(0, vocab - 1), st.lists(st.integers(0, vocab - 1), min_size=1, max_size=2))
    )
    return {
        "models": (
            draw(st.integers(0, 10**6)),
            draw(st.integers(1, 2)),
            draw(st.sampled_from([1.0, 4.0, 10.0])),
            vocab,
        ),
        "prompt": draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=6)),
        "scheme": name,
        "tree": tree,
        "verifier": draw(st.sampled_from(accepting(parse_shape(tree), schemes.get(name)))),
        "max_new_tokens": draw(st.integers(1, 12)),
        "temperature": draw(st.sampled_from([0.0, 0.3, 1.0, 1.8]) | st.floats(0.05, 2.0)),
        "top_k": draw(st.one_of(st.none(), st.integers(1, vocab))),
        "top_p": draw(st.one_of(st.none(), st.floats(0.05, 1.0))),
        "eos_token_id": eos,
        "seed": draw(st.integers(0, 2**31)),
    }


def cache_entries(cache, length: int) -> list[torch.Tensor]:
    return [t[..., :length, :] for layer in cache.layers for t in (layer.keys, layer.values)]


def check_cache(model, cache, tokens: list[int], length: int) -> None:
    """``cache`` holds ``length`` entries, and its first len(tokens) equal a fresh forward over ``tokens``."""
    assert cache.get_seq_length() == length
    with torch.no_grad():
        fresh = model(torch.tensor([tokens]), use_cache=True).cache
    for kept, expected in zip(cache_entries(cache, len(tokens)), cache_entries(fresh, len(tokens))):
        torch.testing.assert_close(kept, expected, atol=1e-4, rtol=0)


@settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(runs())
def test_every_run_keeps_the_invariants(run):
    seed, layers, scale, vocab = run["models"]
    target = tiny_llama(seed, layers=layers, scale=scale, vocab=vocab)
    draft = tiny_llama(seed + 1, layers=layers, scale=scale, vocab=vocab)
    prompt, shape = run["prompt"], parse_shape(run["tree"])
    runners = TorchRunner(target), TorchRunner(draft)  # their caches are read after the run
    result = decoding.generate(
        *runners,
        torch.tensor(prompt),
        scheme=run["scheme"],
        tree=run["tree"],
        verifier=run["verifier"],
        max_new_tokens=run["max_new_tokens"],
        temperature=run["temperature"],
        top_k=run["top_k"],
        top_p=run["top_p"],
        eos_token_id=run["eos_token_id"],
        generator=torch.Generator().manual_seed(run["seed"]),
        max_tree_nodes=max(2, max_nodes(shape, vocab)),
    )
    out, limit = result.tokens, run["max_new_tokens"]
    eos = {run["eos_token_id"]} if isinstance(run["eos_token_id"], int) else set(run["eos_token_id"] or ())
    assert 1 <= len(out) <= limit
    assert all(0 <= token < vocab for token in out)
    first_eos = next((i for i, token in enumerate(out) if token in eos), None)
    assert len(out) == (limit if first_eos is None else first_eos + 1)

    committed = len(prompt) + sum(a + 1 for a in result.accepted_lengths)  # before the output was cut
    known = prompt + out  # the committed tokens the output still shows
    target_cache, draft_cache = (runner.cache for runner in runners)
    check_cache(target, target_cache, known[: committed - 1], committed - 1)
    drafted = draft_cache.get_seq_length()
    plain_end = int(result.tree_sizes[-1] == 1)  # one token was still wanted: the draft was not called
    if plain_end and result.target_calls == 1:
        assert drafted == 0
    else:
        assert drafted in (committed - 2 - plain_end, committed - 1 - plain_end)
        check_cache(draft, draft_cache, known[:drafted], drafted)

    if run["temperature"] == 0:
        with torch.no_grad():
            logits = target(torch.tensor([known])).logits[0, len(prompt) - 1 : -1]  # [len(out), V]
        chosen = logits.gather(1, torch.tensor(out)[:, None])[:, 0]
        assert bool((chosen >= logits.max(-1).values - 1e-5).all()), "not the greedy continuation"
