"""Tree shapes, growth with merged duplicates, masks, positions and the verification walk."""

from __future__ import annotations

import pytest
import torch

from multidraft import schemes
from multidraft.tree import (
    Tree,
    TreeTemplate,
    check_shape,
    format_shape,
    level_capacity,
    parse_shape,
    shape_depth,
)
from multidraft.verifiers.token import walk

# -- shapes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ("2x4", (2, 2, 2, 2)),
        (" 3 x 1 ", (3,)),
        ("1x3", (1, 1, 1)),
        ("2,2,1,1", (2, 2, 1, 1)),
        ("4", (4,)),
        ("3, 2", (3, 2)),
        ([3, 2, 1], (3, 2, 1)),
        ((1,), (1,)),
    ],
)
def test_parse_shape(spec, shape):
    assert parse_shape(spec) == shape


@pytest.mark.parametrize(
    "spec", ["", "x", "2x", "x3", "2x0", "0x2", "2,,1", "2,0,1", "a", "2,-1", "2x2x2", "1.5", [], [2, 0], [1.5], [True]]
)
def test_parse_shape_rejects(spec):
    with pytest.raises(ValueError):
        parse_shape(spec)


def test_format_shape_round_trips():
    for spec in ["2x4", "3,2,1", "1x1", "3/2,1,0/1,1,0", "1/1/1"]:
        assert format_shape(parse_shape(spec)) == spec


def test_parse_template_per_node():
    template = parse_shape("3/2,1,0/1,1,0")
    assert template == parse_shape([[3], [2, 1, 0], [1, 1, 0]])
    assert isinstance(template, TreeTemplate)
    assert (template.depth, template.size, template.counts) == (3, 9, (3, 2, 1, 0, 1, 1, 0))
    assert [template.child(0, i) for i in range(3)] == [1, 2, 3]
    assert [template.child(1, i) for i in range(2)] == [4, 5]
    assert template.child(2, 0) == 6
    assert level_capacity(template, vocab=100) == [1, 3, 3, 2]
    assert level_capacity((2, 3), vocab=100) == [1, 2, 6]
    assert level_capacity((4, 4), vocab=3) == [1, 3, 9]
    assert shape_depth(template) == 3 and shape_depth((2, 2)) == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [("3/2,1/1", "level 1 lists 2 nodes, but level 0 gives 3"), ("0/", "cannot parse"), ("0", "at least 1"),
     ("2/0,0", "last level gives no drafts"), ("2,1/1,0", "one root"), ([[2], [1, "a"]], "integers")],
)
def test_parse_template_rejects(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_shape(spec)


def test_check_shape_checks_every_node_of_a_template():
    check_shape(parse_shape("2/2,0"), schemes.get("spechub"))  # a leaf (0 drafts) needs no check
    with pytest.raises(ValueError, match="depth 2"):
        check_shape(parse_shape("2/1,2"), schemes.get("spechub"))


def test_template_growth_gives_each_node_its_own_drafts():
    """Template 3/2,1,0: node 1 gets 2 drafts, node 2 one, node 3 none; a repeated root draft drops its subtree."""
    tree = Tree.from_root(9, shape=parse_shape("3/2,1,0"))
    assert tree.pending() == [(3, [0])]
    assert tree.grow_groups([([0], torch.tensor([[4, 5, 6]]))]) == slice(1, 4)
    assert tree.pending() == [(1, [2]), (2, [1])]
    level = tree.grow_groups([([2], torch.tensor([[7]])), ([1], torch.tensor([[8, 8]]))])
    # children in parent order: node 1's child (8, merged) first, then node 2's (7)
    assert level == slice(4, 6) and tree.tokens.tolist() == [9, 4, 5, 6, 8, 7]
    assert tree.children_of(1).tolist() == [4, 4] and tree.children_of(2).tolist() == [5]
    assert tree.parents.tolist() == [-1, 0, 0, 0, 1, 2]
    assert not tree.has_drafts(3) and tree.pending() == []
    assert (tree.depth, tree.n_internal) == (2, 4)

    merged = Tree.from_root(9, shape=parse_shape("3/0,0,1"))
    merged.grow_groups([([0], torch.tensor([[4, 5, 4]]))])  # draft 3 repeats draft 1: template node 3 is dropped
    assert merged.tokens.tolist() == [9, 4, 5] and merged.pending() == []


def test_check_shape_names_the_depth():
    check_shape((2, 2), schemes.get("spechub"))
    check_shape((1, 1, 1), schemes.get("sps"))
    with pytest.raises(ValueError, match="depth 3"):
        check_shape((2, 2, 3), schemes.get("spechub"))
    with pytest.raises(ValueError, match="depth 1"):
        check_shape((2,), schemes.get("sps"))


# -- growth, mask, positions --------------------------------------------------------------------------


def example_tree() -> Tree:
    """root(9) drafts (3, 4) -> nodes 1, 2; node 1 drafts (3, 3), merged into node 3; node 2 drafts (0, 2) -> 4, 5."""
    tree = Tree.from_root(9)
    assert tree.grow(torch.tensor([[3, 4]])) == slice(1, 3)
    assert tree.grow(torch.tensor([[3, 3], [0, 2]])) == slice(3, 6)
    return tree


def test_grow_merges_duplicates_and_keeps_the_draft_tuples():
    tree = example_tree()
    assert tree.tokens.tolist() == [9, 3, 4, 3, 0, 2]
    assert tree.parents.tolist() == [-1, 0, 0, 1, 2, 2]
    assert tree.depths.tolist() == [0, 1, 1, 2, 2, 2]
    assert tree.level_starts == [0, 1, 3, 6]
    assert (tree.size, tree.depth, tree.n_internal) == (6, 2, 3)
    assert [tree.drafts_of(node).tolist() for node in range(3)] == [[3, 4], [3, 3], [0, 2]]
    assert [tree.children_of(node).tolist() for node in range(3)] == [[1, 2], [3, 3], [4, 5]]
    assert not any(tree.has_drafts(node) for node in range(3, 6))


def test_merge_keeps_first_occurrence_order():
    tree = Tree.from_root(0)
    tree.grow(torch.tensor([[5, 2, 5, 7, 2]]))
    assert tree.tokens.tolist() == [0, 5, 2, 7]
    assert tree.children_of(0).tolist() == [1, 2, 1, 3, 2]


def test_ancestors_mask_and_positions():
    tree = example_tree()
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0],
            [1, 1, 0, 1, 0, 0],
            [1, 0, 1, 0, 1, 0],
            [1, 0, 1, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(tree.ancestors, expected)
    # Level 2 after 4 committed keys: sees those, then nodes 0..5 where an ancestor.
    visible = tree.visibility(tree.level(2), prefix=4)
    assert visible.shape == (3, 10)
    assert torch.equal(visible[:, :4], torch.ones(3, 4, dtype=torch.bool))
    assert torch.equal(visible[:, 4:], expected[3:])
    # Level 1 only sees keys up to its own nodes (the draft reads level by level).
    assert tree.visibility(tree.level(1), prefix=2).tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 1]]
    assert tree.positions(slice(0, 6), root_position=10).tolist() == [10, 11, 11, 12, 12, 12]


def test_grow_checks_the_level_size():
    tree = Tree.from_root(1)
    with pytest.raises(ValueError):
        tree.grow(torch.tensor([[1, 2], [3, 4]]))


# -- the walk -----------------------------------------------------------------------------------------


def one_hot_rows(tokens: list[int], vocab: int = 10) -> torch.Tensor:
    """[len(tokens), vocab] float64 rows, one-hot at each token: any lossless scheme must output that token."""
    return torch.nn.functional.one_hot(torch.tensor(tokens), vocab).double()


def uniform_rows(n: int, vocab: int = 10) -> torch.Tensor:
    return torch.full((n, vocab), 1.0 / vocab, dtype=torch.float64)


@pytest.mark.parametrize("name", ["rrs", "rrs-wor", "kseq", "greedy", "otm"])
def test_walk_follows_accepted_children_to_a_leaf_then_samples_the_bonus(name):
    tree = example_tree()
    p = one_hot_rows([4, 3, 2, 1, 1, 7])  # root -> 4 (node 2) -> 2 (node 5, a leaf) -> bonus 7
    result = walk(tree, schemes.get(name), p, uniform_rows(tree.n_internal), torch.Generator().manual_seed(0))
    assert (result.path, result.tokens, result.visited, result.accepted) == ([2, 5], [4, 2, 7], [0, 2], 2)


def test_walk_through_a_merged_child():
    tree = example_tree()
    p = one_hot_rows([3, 3, 0, 6, 0, 0])  # root -> 3 (node 1) -> 3 (merged node 3, a leaf) -> bonus 6
    result = walk(tree, schemes.get("rrs"), p, uniform_rows(tree.n_internal), None)
    assert (result.path, result.tokens, result.visited) == ([1, 3], [3, 3, 6], [0, 1])


def test_walk_stops_at_the_first_rejection():
    tree = example_tree()
    generator = torch.Generator().manual_seed(0)
    p = one_hot_rows([8, 3, 2, 1, 1, 7])  # 8 is no draft of the root
    result = walk(tree, schemes.get("rrs"), p, uniform_rows(tree.n_internal), generator)
    assert (result.path, result.tokens, result.visited, result.accepted) == ([], [8], [0], 0)
    p = one_hot_rows([4, 3, 9, 1, 1, 7])  # accept 4, then 9 is no draft of node 2
    result = walk(tree, schemes.get("rrs"), p, uniform_rows(tree.n_internal), generator)
    assert (result.path, result.tokens, result.visited) == ([2], [4, 9], [0, 2])


def test_walk_on_a_root_only_tree_samples_from_p():
    tree = Tree.from_root(3)
    p = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    result = walk(tree, schemes.get("rrs"), p, p[:0], None)
    assert (result.path, result.tokens, result.visited) == ([], [2], [])
