"""Tree size and memory limits: refused up front with the node count, the estimate and the limit; large trees
that fit run."""

from __future__ import annotations

import pytest
import torch

from multidraft import limits
from multidraft.decoding import generate
from multidraft.limits import DEFAULT_MAX_TREE_NODES, estimate_bytes, max_nodes
from multidraft.shapes import parse_shape
from tests.support.models import VOCAB, tiny_llama

PROMPT = torch.tensor([3, 1, 4])


def no_model_call(*models):
    """Forward pre-hooks that fail the test if a model is called."""

    def hook(module, args, kwargs):
        raise AssertionError("a model was called before the limits were checked")

    return [model.register_forward_pre_hook(hook, with_kwargs=True) for model in models]


def test_max_nodes_counts_distinct_children_only():
    assert max_nodes(parse_shape("2x3"), 1000) == 15
    assert max_nodes(parse_shape("3,2,1"), 1000) == 1 + 3 + 6 + 6
    assert max_nodes(parse_shape("16x4"), 1000) == 69905
    assert max_nodes(parse_shape("16x4"), 8) == 1 + 8 + 64 + 512 + 4096  # at most V distinct drafts per node


@pytest.mark.parametrize("tree,nodes", [("16x4", 69905), ("8x6", 299593)])
def test_huge_trees_are_refused_before_any_model_call(tree, nodes):
    target, draft = tiny_llama(0, vocab=1000), tiny_llama(1, vocab=1000)
    hooks = no_model_call(target, draft)
    with pytest.raises(
        ValueError,
        match=rf"^tree {tree} has up to {nodes} nodes per step, more than max_tree_nodes = "
        rf"{DEFAULT_MAX_TREE_NODES} \(its masks, caches and logits would need about [\d.]+ GiB\)",
    ):
        generate(target, draft, PROMPT, scheme="rrs", tree=tree, max_new_tokens=8)
    for hook in hooks:
        hook.remove()


def test_a_tree_beyond_the_memory_is_refused_whatever_the_node_limit(monkeypatch):
    target, draft = tiny_llama(0, vocab=50_000), tiny_llama(1, vocab=50_000)
    hooks = no_model_call(target, draft)
    with pytest.raises(
        ValueError,
        match=r"^tree 256x3 \(16843009 nodes\) with a 3-token prompt and max_new_tokens = 8 "
        r"needs about [\d.]+ GiB on cpu for masks, KV caches and logits, more than the [\d.]+ [GMK]iB available",
    ):
        generate(target, draft, PROMPT, scheme="rrs", tree="256x3", max_new_tokens=8, max_tree_nodes=10**9)
    small = tiny_llama(2), tiny_llama(3)
    hooks += no_model_call(*small)
    needed = estimate_bytes(*small, parse_shape("2x2"), VOCAB, 3, 8)[torch.device("cpu")]
    monkeypatch.setattr(limits, "available_bytes", lambda device: needed - 1)
    with pytest.raises(ValueError, match=r"^tree 2x2 \(7 nodes\) .* more than the [\d.]+ KiB available"):
        generate(*small, PROMPT, scheme="rrs", tree="2x2", max_new_tokens=8)
    for hook in hooks:
        hook.remove()
    with pytest.raises(ValueError, match="max_tree_nodes must be an integer >= 2"):
        generate(*small, PROMPT, scheme="rrs", tree="2x2", max_new_tokens=8, max_tree_nodes=1)


def test_a_large_tree_that_fits_runs_and_its_masks_follow_the_drafted_nodes():
    target, draft = tiny_llama(0), tiny_llama(1)
    tree, largest = "8x3", 585  # 1 + 8 + 64 + 512 nodes at most; i.i.d. drafts repeat, so fewer are drafted
    with pytest.raises(ValueError, match="585 nodes per step"):
        generate(target, draft, PROMPT, scheme="rrs", tree=tree, max_new_tokens=8)
    masks = []
    hook = target.register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs["attention_mask"].shape), with_kwargs=True
    )
    result = generate(
        target,
        draft,
        PROMPT,
        scheme="rrs",
        tree=tree,
        max_new_tokens=12,
        max_tree_nodes=600,
        generator=torch.Generator().manual_seed(0),
    )
    hook.remove()
    assert len(result.tokens) == 12 and len(masks) == result.target_calls
    # After the first step the target's queries are the root and the drafted nodes: the mask [1, 1, Q, K] has
    # as many rows as nodes were drafted, far fewer than the largest possible tree.
    drafted = [shape[-2] for shape in masks[1:]]
    assert all(shape[:2] == (1, 1) for shape in masks) and max(drafted) < largest / 2, drafted


def test_templates_count_their_nodes_and_the_cli_reports_a_refusal_in_one_line(tmp_path, capsys):
    from multidraft.cli import main
    from tests.support.tiny_pair import save_tiny_pair

    assert max_nodes(parse_shape("3/2,1,0/1,1,0"), 1000) == 1 + 3 + 3 + 2
    assert max_nodes(parse_shape("3/2,1,0/1,1,0"), 2) == 1 + 2 + 3 + 2
    target, draft = save_tiny_pair(tmp_path)  # a vocabulary of 24 words
    assert main(["generate", "--target", target, "--draft", draft, "--scheme", "rrs", "--tree", "4x4", "the"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the loading progress bars
    assert last.startswith(
        "multidraft generate: error: tree 4x4 has up to 341 nodes per step, more than "
        "max_tree_nodes = 256 (its masks, caches and logits would need about "
    )
    assert (
        main(
            [
                "generate",
                "--target",
                target,
                "--draft",
                draft,
                "--scheme",
                "rrs",
                "--tree",
                "4x4",
                "--max-tree-nodes",
                "400",
                "--max-new-tokens",
                "3",
                "the",
            ]
        )
        == 0
    )
