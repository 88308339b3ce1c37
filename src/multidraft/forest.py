"""Several token trees over one root, drafted and scored together (for :mod:`multidraft.bench.paired`).

Comparing draft laws at the same context needs one tree per law.  Read one
by one, each tree pays its own draft forwards and its own target forward;
read together they pay one draft forward per level and one target forward,
whose cost grows slowly with the number of query tokens on this hardware
(``multidraft profile``).  The trees share the root; a node sees the
committed tokens and its own ancestors only, so every tree gets exactly the
logits it would get alone (up to floating-point summation order).

Cache layout (both models): the committed tokens, then the nodes in
level-major order, tree by tree within a level.  ``keys[s][v]`` is the
offset of node v of tree s after the last committed token (the root is 0),
which is what :func:`multidraft.decoding.keep_path` needs to keep one tree's
accepted path.  The draft reads a tree's level only while that tree still
grows (the last level is never read), so its offsets differ from the target's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache

from multidraft.decoding import Sampling, causal_visibility, forward, grow_level, step_label
from multidraft.guards import check_finite
from multidraft.schemes.base import Scheme
from multidraft.tree import Tree, TreeShape

Members = list[tuple[int, int]]  # (tree, node) in query order


def _visibility(trees: Sequence[Tree], members: Members, keys: list[dict[int, int]], prefix: int, width: int) -> torch.Tensor:
    """bool [len(members), prefix + width]: each member sees the ``prefix`` committed keys and its ancestors' keys."""
    visible = torch.zeros(len(members), prefix + width, dtype=torch.bool)
    visible[:, :prefix] = True
    for row, (s, node) in enumerate(members):
        for ancestor in trees[s].ancestors[node, : node + 1].nonzero().flatten().tolist():
            visible[row, prefix + keys[s][ancestor]] = True
    return visible


def draft_forest(
    draft,
    cache: DynamicCache,
    seq: torch.Tensor,
    shape: TreeShape,
    laws_of: Sequence[Scheme],
    sampling: Sampling,
    generators: Sequence,
    *,
    step: int | None = None,
) -> tuple[list[Tree], list[torch.Tensor], list[dict[int, int]]]:
    """Grow one tree per scheme for committed tokens ``seq`` [n], tree s with ``generators[s]``.

    Returns the trees, the draft's law q [n_internal_s, V] at each tree's
    internal nodes (as :func:`multidraft.decoding.draft_tree`), and each
    tree's key offsets in the draft cache (module docstring).  One forward
    reads the root, then one per level over every tree still growing.
    """
    n, past = seq.shape[0], cache.get_seq_length()
    committed = causal_visibility(past, n - past, seq.device)  # [n - past, n]
    root = forward(draft, cache, seq[past:], torch.arange(past, n), committed, 1)  # [1, V]
    check_finite(root, "draft", [n - 1], at=step_label(step), nodes=[0])
    trees = [Tree.from_root(seq[-1], shape=shape) for _ in laws_of]
    laws = [[sampling.laws(root)] for _ in laws_of]  # per tree: [n_level, V] per read level
    keys = [{0: 0} for _ in laws_of]
    growing, width = list(range(len(trees))), 1
    while True:
        levels = {s: grow_level(trees[s], laws[s][-1], laws_of[s], generators[s]) for s in growing}
        growing = [s for s in growing if trees[s].pending()]  # the new level are leaves elsewhere: never read
        if not growing:
            break
        members = [(s, node) for s in growing for node in range(levels[s].start, levels[s].stop)]
        for s, node in members:
            keys[s][node], width = width, width + 1
        visible = _visibility(trees, members, keys, n - 1, width)
        positions = torch.tensor([n - 1 + int(trees[s].depths[node]) for s, node in members])
        logits = forward(draft, cache, torch.stack([trees[s].tokens[node] for s, node in members]), positions,
                         visible, len(members))  # [len(members), V]
        check_finite(logits, "draft", positions, at=step_label(step), nodes=[node for _, node in members])
        rows = 0
        for s in growing:
            count = levels[s].stop - levels[s].start
            laws[s].append(sampling.laws(logits[rows : rows + count]))
            rows += count
    return trees, [torch.cat(per_tree) for per_tree in laws], keys


def score_forest(
    target, cache: DynamicCache, seq: torch.Tensor, trees: Sequence[Tree], *, step: int | None = None
) -> tuple[list[torch.Tensor], list[dict[int, int]]]:
    """Target logits [N_s, V] at every node of every tree (row 0: the root), in one forward, and the key offsets.

    The query is ``seq[cache length:]`` (root last, causal) followed by every
    non-root node in level-major order.
    """
    n, past = seq.shape[0], cache.get_seq_length()
    members = [(s, node) for depth in range(1, max(t.depth for t in trees) + 1)
               for s, tree in enumerate(trees) if depth <= tree.depth
               for node in range(tree.level(depth).start, tree.level(depth).stop)]
    keys = [{0: 0} for _ in trees]
    for key, (s, node) in enumerate(members, start=1):
        keys[s][node] = key
    width = len(members) + 1
    committed = torch.nn.functional.pad(causal_visibility(past, n - past, seq.device), (0, width - 1))
    visible = torch.cat([committed, _visibility(trees, members, keys, n - 1, width)])
    tokens = torch.cat([seq[past:], torch.stack([trees[s].tokens[node] for s, node in members])])
    positions = torch.cat([torch.arange(past, n), torch.tensor([n - 1 + int(trees[s].depths[node]) for s, node in members])])
    logits = forward(target, cache, tokens, positions, visible, width)  # [width, V], row 0 the root
    check_finite(logits, "target", positions[-width:], at=step_label(step), nodes=range(width))
    per_tree = [logits[[keys[s][node] for node in range(tree.size)]] for s, tree in enumerate(trees)]
    return per_tree, keys
