"""The llama.cpp runner on a tiny GGUF the tests write (``tests/support/llama_gguf.py``): trees, keep_path, refusals.

A node's logits in a tree batch are compared with the same prefix decoded
alone, as one causal sequence in an empty cache of a second runner.  Both are
the same engine's computation but not the same float operations: matrix
products over another number of rows may sum in another order, and a K/V row
computed so may round the other way when stored as float16.  Measured over
40 trees (10 seeds x 4 rounds of tree and keep_path, 1 and 2 threads), the
logits (of magnitude ~3 here) differed by at most 9e-4 with float32 weights
and not at all with 8-bit weights; ``TOLERANCE`` is 5e-3.  A mask that shows
a node its sibling moves them by more than 1 (checked below).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.usefixtures("one_thread")  # torch's thread pool and llama.cpp's would contend

from multidraft.models import load_tokenizer  # noqa: E402
from multidraft.runners.base import Runner  # noqa: E402
from multidraft.runners.gguf_file import read_gguf  # noqa: E402
from multidraft.runners.llama import LlamaRunner  # noqa: E402
from multidraft.runners.subvocabulary import write_subvocabulary  # noqa: E402
from tests.support.llama_gguf import BOS, EOS, write_tiny_llama  # noqa: E402

VOCAB = 48
TOLERANCE = 5e-3
PROMPT = [5, 17, 3, 40, 22]
#: A forest over the committed prefix: parents (-1: the prefix) and tokens, parents before children.
PARENTS = [-1, 0, 0, 1, 2, 2, 3, -1, 7]
TOKENS = [9, 12, 30, 7, 45, 21, 11, 33, 6]


@pytest.fixture(scope="module", params=["f32", "q8_0"])
def gguf(request, tmp_path_factory):
    return write_tiny_llama(
        tmp_path_factory.mktemp("gguf") / f"tiny-{request.param}.gguf", vocab=VOCAB, quantized=request.param == "q8_0"
    )


@pytest.fixture(scope="module")
def runner(gguf):
    with LlamaRunner(gguf, threads=1, context=256, sequences=8) as runner:
        yield runner


@pytest.fixture(scope="module")
def reference(gguf):
    with LlamaRunner(gguf, threads=1, context=256, sequences=1) as runner:
        yield runner


def causal(past: int, n: int) -> torch.Tensor:
    return torch.ones(n, past + n, dtype=torch.bool).tril(past)


def alone(runner: LlamaRunner, sequence: list[int]) -> torch.Tensor:
    """Logits [V] after ``sequence``, decoded as one causal sequence in an empty cache."""
    runner.reset()
    n = len(sequence)
    return runner.forward(torch.tensor(sequence), torch.arange(n), causal(0, n), 1)[0]


def prefill(runner: LlamaRunner, tokens: list[int], commit: bool = True) -> None:
    runner.reset()
    runner.forward(torch.tensor(tokens), torch.arange(len(tokens)), causal(0, len(tokens)), 1)
    if commit:
        runner.keep_path(len(tokens), [])


def path_to(parents: list[int], node: int) -> list[int]:
    path = []
    while node >= 0:
        path.append(node)
        node = parents[node]
    return path[::-1]


def forest_call(parents: list[int], nodes: range, committed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """visible [len(nodes), committed + nodes.stop] and positions of ``nodes`` of a forest over ``committed``
    entries whose earlier nodes sit in the cache at offsets committed + id."""
    visible = torch.zeros(len(nodes), committed + nodes.stop, dtype=torch.bool)
    visible[:, :committed] = True
    positions = []
    for row, node in enumerate(nodes):
        path = path_to(parents, node)
        visible[row, [committed + v for v in path]] = True
        positions.append(committed + len(path) - 1)
    return visible, torch.tensor(positions)


def decode_forest(runner, parents, tokens, levels, committed) -> torch.Tensor:
    rows = []
    for nodes in levels:
        visible, positions = forest_call(parents, nodes, committed)
        rows.append(runner.forward(torch.tensor(tokens[nodes.start : nodes.stop]), positions, visible, len(nodes)))
        assert runner.cached() == committed + nodes.stop
    return torch.cat(rows)


def test_the_runner_answers_the_interface(runner):
    assert isinstance(runner, Runner)
    assert (runner.engine, runner.vocab_size, runner.device) == ("llama.cpp", VOCAB, torch.device("cpu"))
    info = read_gguf(runner.path)
    assert (info.architecture, info.vocab_size, info.bos_token_id, info.end_token_ids) == ("llama", VOCAB, BOS, (EOS,))
    assert runner.end_tokens() == (EOS,)
    tokenizer = load_tokenizer(runner.path)  # from the metadata: no tensor is de-quantised
    assert (len(tokenizer), tokenizer.eos_token_id, tokenizer.decode([3, 4])) == (VOCAB, EOS, "a b")


@pytest.mark.parametrize(
    "levels", [[range(0, 9)], [range(0, 3), range(3, 7), range(7, 9)]], ids=["one call", "level by level"]
)
def test_tree_logits_equal_each_prefix_decoded_alone(runner, reference, levels):
    prefill(runner, PROMPT)
    tree = decode_forest(runner, PARENTS, TOKENS, levels, len(PROMPT))  # [9, V]
    assert tree.dtype == torch.float32 and tree.shape == (len(TOKENS), VOCAB)
    for node in range(len(TOKENS)):
        expected = alone(reference, PROMPT + [TOKENS[v] for v in path_to(PARENTS, node)])
        assert (tree[node] - expected).abs().max() <= TOLERANCE, node
    sibling_seen = alone(reference, PROMPT + [9, 12, 30, 45])  # node 4 (path 9, 30, 45) also seeing node 1 (12)
    assert (tree[4] - sibling_seen).abs().max() > 0.1


def test_flash_attention_sees_the_same_tree(gguf):
    """With flash attention on, a tree decoded in one call keeps each path's cells in cache order, so each node's
    logits are those of its prefix decoded alone with flash attention too."""
    with (
        LlamaRunner(gguf, threads=1, context=256, sequences=8, flash_attention=True) as fused,
        LlamaRunner(gguf, threads=1, context=256, sequences=1, flash_attention=True) as fused_alone,
    ):
        prefill(fused, PROMPT)
        tree = decode_forest(fused, PARENTS, TOKENS, [range(9)], len(PROMPT))
        for node in range(len(TOKENS)):
            expected = alone(fused_alone, PROMPT + [TOKENS[v] for v in path_to(PARENTS, node)])
            assert (tree[node] - expected).abs().max() <= TOLERANCE, node


def test_a_tree_below_an_uncommitted_prompt(runner, reference):
    """The decoder reads the prompt without committing it: the tree hangs below its last entry."""
    prefill(runner, PROMPT, commit=False)
    trunk = len(PROMPT)
    parents = [i - 1 for i in range(trunk)] + [p + trunk if p >= 0 else trunk - 1 for p in PARENTS]
    logits = decode_forest(runner, parents, PROMPT + TOKENS, [range(trunk, trunk + 9)], 0)
    for node in range(9):
        expected = alone(reference, PROMPT + [TOKENS[v - trunk] for v in path_to(parents, node + trunk)[trunk:]])
        assert (logits[node] - expected).abs().max() <= TOLERANCE, node


@pytest.mark.parametrize("accepted", [[], [0], [0, 2], [0, 2, 5], [7, 8]])
def test_keep_path_leaves_the_cache_of_the_accepted_path_decoded_plainly(runner, reference, accepted):
    prefill(runner, PROMPT)
    committed = len(PROMPT)
    decode_forest(runner, PARENTS, TOKENS, [range(9)], committed)
    runner.keep_path(committed, [committed + v for v in accepted])
    sequence = PROMPT + [TOKENS[v] for v in accepted]
    assert runner.cached() == len(sequence)
    after = runner.forward(torch.tensor([13]), torch.tensor([len(sequence)]), causal(len(sequence), 1), 1)[0]
    assert (after - alone(reference, sequence + [13])).abs().max() <= TOLERANCE


def test_rounds_of_trees_and_keep_paths_stay_exact(runner, reference):
    """Sequence ids are reused round after round: three trees, each checked node by node, then cut."""
    text = PROMPT[:3]
    prefill(runner, text)
    for round_, accepted in enumerate([[0, 1, 3, 6], [7], [0, 2, 4]]):
        tokens = [(t + 7 * round_) % VOCAB for t in TOKENS]
        tree = decode_forest(runner, PARENTS, tokens, [range(0, 2), range(2, 9)], len(text))
        for node in (0, 3, 5, 8):
            expected = alone(reference, text + [tokens[v] for v in path_to(PARENTS, node)])
            assert (tree[node] - expected).abs().max() <= TOLERANCE, (round_, node)
        runner.keep_path(len(text), [len(text) + v for v in accepted])
        text = text + [tokens[v] for v in accepted]
        assert runner.cached() == len(text)


def test_keep_path_can_cut_into_the_committed_prefix(runner, reference):
    prefill(runner, PROMPT)
    decode_forest(runner, PARENTS, TOKENS, [range(9)], len(PROMPT))
    runner.keep_path(3, [3])
    assert runner.cached() == 4
    after = runner.forward(torch.tensor([13]), torch.tensor([4]), causal(4, 1), 1)[0]
    assert (after - alone(reference, PROMPT[:4] + [13])).abs().max() <= TOLERANCE


def bad_calls(committed: int):
    """(what is wrong, tokens, positions, visible) for two queries after ``committed`` entries and the forest's
    nodes 0 (root) and 1 (its child) in the cache."""
    cached = committed + 2
    good = torch.ones(2, cached + 2, dtype=torch.bool)
    good[:, cached:] = torch.tensor([[True, False], [True, True]])
    good[:, committed + 1] = False  # query 0 is a sibling of node 1, below node 0; query 1 its child
    tokens, positions = torch.tensor([4, 8]), torch.tensor([committed + 1, committed + 2])
    yield "good", tokens, positions, good
    hidden = good.clone()
    hidden[1, 0] = False
    yield "a committed entry hidden", tokens, positions, hidden
    skipped = good.clone()
    skipped[1, committed] = False
    yield "an ancestor skipped", tokens, positions, skipped
    sibling = good.clone()
    sibling[1, committed + 1] = True
    yield "a sibling seen", tokens, positions, sibling
    later = good.clone()
    later[0, cached + 1] = True
    yield "a later query seen", tokens, positions, later
    yield "positions off", tokens, positions + 1, good
    yield "visible too short", tokens, positions, good[:, 1:]
    yield "a token out of the vocabulary", torch.tensor([4, VOCAB]), positions, good
    yield "float tokens", tokens.float(), positions, good


def test_malformed_calls_are_refused_before_llama_cpp_sees_them(runner):
    prefill(runner, PROMPT)
    committed = len(PROMPT)
    chain = causal(committed, 2)
    chain_positions = torch.arange(committed, committed + 2)
    for what, tokens, positions, visible in bad_calls(committed):
        if what == "good":
            continue
        runner.keep_path(committed, [])
        runner.forward(torch.tensor([9, 12]), chain_positions, chain, 1)
        with pytest.raises(ValueError):
            runner.forward(tokens, positions, visible, 2)
        assert runner.cached() == committed + 2, what
    runner.keep_path(committed, [])
    runner.forward(torch.tensor([9, 12]), chain_positions, chain, 1)
    _, tokens, positions, visible = next(bad_calls(committed))
    logits = runner.forward(tokens, positions, visible, 2)
    assert (logits[0] - alone(runner, PROMPT + [9, 4])).abs().max() <= TOLERANCE


def test_too_many_leaves_and_bad_paths_are_refused(gguf):
    with LlamaRunner(gguf, threads=1, context=64, sequences=2) as small:
        prefill(small, PROMPT)
        visible, positions = forest_call(PARENTS, range(9), len(PROMPT))
        with pytest.raises(ValueError, match="sequence ids"):
            small.forward(torch.tensor(TOKENS), positions, visible, 1)  # 4 leaves, 2 ids
        assert small.cached() == len(PROMPT)
        decode_forest(small, PARENTS[:3], TOKENS[:3], [range(3)], len(PROMPT))  # 2 leaves fit
        for length, path in [(5, [6, 7]), (5, [7, 6]), (4, [6]), (9, [])]:
            with pytest.raises(ValueError, match="keep_path"):
                small.keep_path(length, path)
        small.keep_path(5, [5, 7])
        assert small.cached() == 7


def test_construction_refuses_what_is_not_a_gguf_model(tmp_path):
    text = tmp_path / "model.gguf"
    text.write_text("not a model")
    for path in (tmp_path / "missing.gguf", tmp_path):
        with pytest.raises(ValueError, match="gguf"):
            LlamaRunner(path)
    with pytest.raises(ValueError):
        LlamaRunner(text)
    with pytest.raises(ValueError, match="gguf"):
        read_gguf(text)


def test_a_sub_vocabulary_keeps_the_logits_of_the_kept_tokens(gguf, reference, tmp_path):
    cut = write_subvocabulary(gguf, tmp_path / "cut.gguf", keep=20)
    info = read_gguf(cut)
    kept = info.kept_ids.tolist()
    assert kept == list(range(20)) and info.vocab_size == VOCAB and info.input_ids[kept].tolist() == list(range(20))
    dropped = sorted(set(range(VOCAB)) - set(kept))
    with LlamaRunner(cut, threads=1, context=64, sequences=2) as small:
        assert small.vocab_size == VOCAB and small.end_tokens() == (EOS,)
        text = [5, 17, 3, 12]
        logits = alone(small, text)
        full = alone(reference, text)
        assert (logits[kept] - full[kept]).abs().max() <= TOLERANCE
        assert bool((logits[dropped] == torch.finfo(torch.float32).min).all())
        outside = 40  # "\u2581l1": read as its longest kept prefix "\u2581l"
        assert outside in dropped
        read_as = kept[int(info.input_ids[outside])]
        assert torch.equal(alone(small, text + [outside]), alone(small, text + [read_as]))
        assert not torch.equal(alone(reference, text + [outside]), alone(reference, text + [read_as]))
