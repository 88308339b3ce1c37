"""Trees read together get exactly the laws they get alone, and the caches keep one tree's path."""

from __future__ import annotations

import pytest
import torch

from multidraft import schemes
from multidraft.decoding import Sampling, draft_tree, keep_path, new_cache, score_tree
from multidraft.forest import draft_forest, score_forest
from multidraft.tree import parse_shape

LAWS = ["spechub", "rrs", "rrs-wor"]


def alone(target, draft, seq, shape, sampling, seed):
    """Each scheme's tree, q and target logits from its own draft_tree / score_tree on fresh caches."""
    out = []
    for name in LAWS:
        target_cache, draft_cache = new_cache(), new_cache()
        generator = torch.Generator().manual_seed(seed)
        tree, _, q = draft_tree(draft, draft_cache, seq, shape, schemes.get(name), sampling, generator)
        out.append((tree, q, score_tree(target, target_cache, seq, tree)))
    return out


@pytest.mark.parametrize("tree", ["2x3", "2x1", "2/2,0"])
@torch.no_grad()
def test_forest_matches_trees_read_alone(pair, one_thread, tree):
    target, draft = pair
    shape = parse_shape(tree)
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    seq = torch.tensor([1, 5, 2, 7, 3])
    for seed in range(4):
        target_cache, draft_cache = new_cache(), new_cache()
        generators = [torch.Generator().manual_seed(seed) for _ in LAWS]
        trees, q_laws, _ = draft_forest(draft, draft_cache, seq, shape, [schemes.get(n) for n in LAWS], sampling, generators)
        logits, _ = score_forest(target, target_cache, seq, trees)
        for (tree_alone, q_alone, logits_alone), forest_tree, q, rows in zip(alone(target, draft, seq, shape, sampling, seed),
                                                                            trees, q_laws, logits):
            assert torch.equal(forest_tree.tokens, tree_alone.tokens)
            assert torch.equal(forest_tree.parents, tree_alone.parents)
            torch.testing.assert_close(q, q_alone, rtol=0, atol=1e-6)
            torch.testing.assert_close(rows, logits_alone, rtol=0, atol=1e-5)


@torch.no_grad()
def test_forest_caches_keep_one_trees_path(pair, one_thread):
    """After keeping tree s's path, the next step reads what a fresh cache over the extended text reads."""
    target, draft = pair
    shape = parse_shape("2x2")
    sampling = Sampling(1.0, None, None, torch.device("cpu"), torch.float32)
    seq = torch.tensor([1, 5, 2, 7, 3])
    n = seq.shape[0]
    generators = [torch.Generator().manual_seed(3) for _ in LAWS]
    target_cache, draft_cache = new_cache(), new_cache()
    trees, _, draft_keys = draft_forest(draft, draft_cache, seq, shape, [schemes.get(n) for n in LAWS], sampling, generators)
    _, target_keys = score_forest(target, target_cache, seq, trees)
    s = 2
    leaf = trees[s].level(2).start  # the path root -> depth 1 -> depth 2
    path = [int(trees[s].parents[leaf]), leaf]
    keep_path(target_cache, n, [n - 1 + target_keys[s][v] for v in path])
    keep_path(draft_cache, n, [n - 1 + draft_keys[s][v] for v in path if v in draft_keys[s]])
    longer = torch.cat([seq, trees[s].tokens[path], torch.tensor([6])])  # the walk's last token is never cached
    next_trees, next_q, _ = draft_forest(draft, draft_cache, longer, shape, [schemes.get(n) for n in LAWS], sampling,
                                         [torch.Generator().manual_seed(4) for _ in LAWS])
    next_logits, _ = score_forest(target, target_cache, longer, next_trees)
    for (tree_alone, q_alone, logits_alone), q, rows in zip(alone(target, draft, longer, shape, sampling, 4), next_q, next_logits):
        torch.testing.assert_close(q, q_alone, rtol=0, atol=1e-6)
        torch.testing.assert_close(rows, logits_alone, rtol=0, atol=1e-5)
