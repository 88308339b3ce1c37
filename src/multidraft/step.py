"""One speculative step: draft, score, verify, cut (docs/design.md §2).

For committed tokens s_1..s_n (the root of every tree is s_n):

1. **Draft** (:func:`draft_trees`).  The draft reads the committed tokens its
   cache lacks and gives q at the root; each tree's scheme draws the root's
   drafts, distinct drafts become depth-1 nodes.  Each further level is one
   draft forward over the new nodes of every tree still growing, with a mask
   that lets a node see the committed prefix and its own ancestors only.  A
   level that gets no drafts (the leaves) is never read.
2. **Score** (:func:`score_trees`).  One target forward over the committed
   tokens its cache lacks (just s_n after the first step), then every node
   of every tree, at position n - 1 + depth: p at every node.
3. **Verify.**  The verifier walks one tree (the *driver*) and emits its
   accepted path plus one more token.
4. **Cut** both caches back to s_1..s_n and the driver's accepted path.  Both
   then hold every committed token but the last, which the next step feeds
   as its root.

Several trees over one root (a *forest*) are read together: one draft
forward per level and one target forward in all.  Each tree gets exactly the
logits it would get alone, because a node attends to the committed prefix
and its ancestors only.  A plan without drafts (``scheme=None``) is plain
decoding: the draft is not called, the tree is the root alone and its bonus
token is drawn from p at the root.

Cache layout (both runners): the committed tokens, then the step's nodes in
level-major order, tree by tree within a level.  ``keys[s][v]`` is the offset
of node v of tree s after the last committed token (the root is 0).  The
draft never reads a tree's last level, so its keys cover the internal nodes only.

Lossless: each tree is drawn from its scheme's draft law given the committed
text, and the verifier keeps the emitted tokens distributed as the target's
law given that text (:mod:`multidraft.verifiers`); the plan of a step is
fixed before its drafts are drawn.

**Stopping on the draft's confidence** (``TreePlan.min_probability`` τ > 0, the
rule of SpecDec++ and of Hugging Face's ``assistant_confidence_threshold``): a
tree stops growing after a level in which every new node's token had draft
probability q(x | parent) < τ, so a chain ends where the draft itself doubts
its last token.  Still lossless with the token walk: whether node v gets
drafts is decided from draft-side draws made before v's own drafts (the
tokens above it and their q), never from the target or the verifier's
uniforms.  At an accepted node v the next token is then the walk's output at
v, which has law p(· | text, path to v) whether v was given fresh drafts from
the scheme's law at v or is a leaf (the bonus token, drawn from p); by
induction over the path the emitted sequence has the target's law.  Verifiers
that judge a whole tree at once assume its shape was fixed in advance, so the
rule is refused for them (:func:`check_stop`).

**Drafts copied from the text** (``TreePlan.lookup``): the tree is the chain
that followed an earlier occurrence of the text's last tokens
(:func:`multidraft.lookup.continuation`), cut to the plan's depth, with the
point mass on each copied token as its draft law q.  The draft is not called
(unless the plan looks back), so it falls behind as after plain steps.  The
chain and its length are functions of the committed text alone, fixed
before anything of the step is drawn, so every verifier stays lossless on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from multidraft.guards import check_finite
from multidraft.lookup import continuation
from multidraft.runners.base import Runner, causal_visibility
from multidraft.sampling_options import Sampling
from multidraft.schemes.base import Scheme
from multidraft.shapes import TreeShape, shape_depth, shape_prefix
from multidraft.tree import Tree
from multidraft.verifiers.base import Verifier, Walk
from multidraft.verifiers.token import VERIFIER as PLAIN


@dataclass(frozen=True)
class TreePlan:
    """How one tree of a step is drafted: the scheme's draft law on ``shape``, drawn with ``generator``.

    ``scheme=None`` (and ``shape=None``) is plain decoding: no drafts.  ``min_probability`` τ > 0 stops the
    tree after a level whose every new token had draft probability below τ (module docstring).
    ``look_back`` k > 0 asks the draft for its law at the last k committed tokens too, which it reads
    anyway when it lags (after plain steps), so that a planner can compare it with the target's laws
    there; with plain decoding the draft then reads the tokens it lacks and draws nothing.  The target
    gives its law at those of them it reads in this step too (at the first step: the prompt's).
    ``lookup`` copies the drafts from the committed text instead (module docstring): a chain of at most
    the depth of ``shape``, which must be a chain, verified as ``scheme``'s with point-mass draft laws.
    """

    scheme: Scheme | None
    shape: TreeShape | None
    generator: torch.Generator | None
    min_probability: float = 0.0
    look_back: int = 0
    lookup: bool = False


def within(plan: TreePlan, depth: int) -> TreePlan:
    """``plan`` cut to at most ``depth`` levels below the root (plain decoding at 0): a step then emits at most
    depth + 1 tokens, so no draft is drawn past the tokens still wanted.  The cut depends on how many tokens
    are still wanted only, fixed before the step's drafts, so the step stays lossless."""
    if plan.scheme is None or shape_depth(plan.shape) <= depth:
        return plan
    if depth <= 0:
        return TreePlan(None, None, plan.generator, look_back=plan.look_back)
    return replace(plan, shape=shape_prefix(plan.shape, depth))


def judge(plan: TreePlan, verifier: Verifier, tree: Tree) -> Verifier:
    """The verifier of ``plan``'s ``tree``: ``verifier``, or for a tree without drafts (plain decoding, a copying
    plan with nothing to copy) the token walk, which draws the root's one token from p under every verifier."""
    return verifier if plan.scheme is not None and tree.size > 1 else PLAIN


def check_stop(min_probability: float, verifier: str) -> None:
    """``ValueError`` unless 0 <= τ < 1 and, for τ > 0, the verifier is the token walk (module docstring)."""
    if not 0.0 <= min_probability < 1.0:
        raise ValueError(f"min_draft_probability must be in [0, 1), got {min_probability}")
    if min_probability > 0 and verifier != "token":
        raise ValueError(
            f"min_draft_probability > 0 makes a tree's depth depend on its drafts; the {verifier!r} verifier "
            "assumes a shape fixed in advance, so only the token walk (verifier='token') may stop early"
        )


def doubted(tree: Tree, law: torch.Tensor, level: slice, start: int, min_probability: float) -> bool:
    """Whether every node of ``level`` has draft probability below τ at its parent; ``law`` [n_parent_level, V]
    is q at the parent level, whose first node id is ``start``."""
    confidence = law[tree.parents[level] - start, tree.tokens[level]]  # [n_level]
    return bool((confidence < min_probability).all())


@dataclass
class Step:
    """Everything one step saw.  Per tree s: ``plans[s]``, ``trees[s]``; ``q[s]``, ``draft_logits[s]``
    [n_internal_s, V]; ``p[s]``, ``target_logits[s]`` [N_s, V]; the walk of tree ``driver``; and
    ``looked_back`` [k, V], the draft's law of each of the last k committed tokens given the tokens before
    it (k from the plans' ``look_back``, at most the tokens the draft read this step; None if the draft
    was not called); ``target_looked_back`` [k', V] the target's law there, for the last k' <= k of them
    that the target read in this step (empty where its cache held them all)."""

    plans: Sequence[TreePlan]
    trees: list[Tree]
    q: list[torch.Tensor]
    draft_logits: list[torch.Tensor]
    p: list[torch.Tensor]
    target_logits: list[torch.Tensor]
    driver: int
    walk: Walk
    looked_back: torch.Tensor | None = None
    target_looked_back: torch.Tensor | None = None


def label(step: int | None) -> str:
    """How errors name a step: "step 3" inside a generation, else "a single step"."""
    return f"step {step}" if step is not None else "a single step"


def copied_chain(seq: torch.Tensor, shape: TreeShape) -> Tree:
    """The chain of :func:`multidraft.lookup.continuation` after committed tokens ``seq`` [n], at most as deep as
    ``shape`` (the root alone where the text's last token never occurred before)."""
    tokens, _ = continuation(seq, shape_depth(shape))  # [d]
    tree = Tree.from_root(seq[-1], shape=(1,) * tokens.shape[0])
    for token in tokens:
        tree.grow(token.view(1, 1))
    return tree


def point_masses(tree: Tree, p: torch.Tensor) -> torch.Tensor:
    """q [n_internal, V] of a copied chain: at each internal node the point mass on its child's token, in the
    dtype and device of ``p`` [N, V]."""
    q = torch.zeros_like(p[: tree.n_internal])
    q[torch.arange(tree.n_internal), tree.tokens[1:]] = 1.0
    return q


def grow_level(tree: Tree, law: torch.Tensor, scheme: Scheme, generator) -> slice:
    """Draw the drafts of the deepest level's nodes from their laws ``law`` [n_level, V]; returns the new level."""
    start, groups = tree.level_starts[-2], tree.pending()
    whole = len(groups) == 1 and len(groups[0][1]) == law.shape[0]
    return tree.grow_groups(
        [
            (nodes, scheme.sample_drafts(law if whole else law[[i - start for i in nodes]], k, generator, check=False))
            for k, nodes in groups
        ]
    )


def tree_visibility(
    trees: Sequence[Tree], members: Sequence[tuple[int, slice]], keys: Sequence[list[int]], prefix: int, width: int
) -> torch.Tensor:
    """bool [Q, prefix + width]: the nodes of ``members`` (tree s, node ids) see the ``prefix`` committed keys
    and the keys of their ancestors in the same tree (``keys[s]``: node id -> key, for ids up to the members')."""
    rows = sum(nodes.stop - nodes.start for _, nodes in members)
    visible = torch.zeros(rows, prefix + width, dtype=torch.bool)
    visible[:, :prefix] = True
    row = 0
    for s, nodes in members:
        count = nodes.stop - nodes.start
        columns = prefix + torch.tensor(keys[s][: nodes.stop])  # [nodes.stop]
        visible[row : row + count, columns] = trees[s].ancestors[nodes, : nodes.stop]
        row += count
    return visible


def draft_trees(
    draft: Runner, seq: torch.Tensor, plans: Sequence[TreePlan], sampling: Sampling, *, step: int | None = None
) -> tuple[list[Tree], list[torch.Tensor | None], list[torch.Tensor | None], list[list[int]], torch.Tensor | None]:
    """Grow one tree per plan for committed tokens ``seq`` [n] (module docstring).

    Returns the trees, the draft's law q and raw logits [n_internal_s, V] at each tree's internal nodes,
    each tree's keys in the draft cache, and q [k, V] of the last k committed tokens (the plans' largest
    ``look_back``, at most the tokens the draft lacked; None if the draft was not called).  Plans without
    drafts get the root alone and None for q and the logits; the draft is not called unless one looks back.
    Copying plans (``lookup``) get their copied chain, and None for q and the logits (the draft never read it).
    """
    n = seq.shape[0]
    trees = [
        copied_chain(seq, plan.shape) if plan.lookup else Tree.from_root(seq[-1], shape=plan.shape) for plan in plans
    ]
    logits = [[] for _ in plans]  # per tree: raw logits [n_level, V] per read level
    laws = [[] for _ in plans]  # per tree: q [n_level, V] per read level
    keys = [[0] for _ in plans]
    growing = [s for s, plan in enumerate(plans) if plan.scheme is not None and not plan.lookup]
    looked_back = None
    if growing or any(plan.look_back for plan in plans):
        past = draft.cached()
        back = min(max(plan.look_back for plan in plans), n - 1 - past)  # rows before the root's
        rows = draft.forward(seq[past:], torch.arange(past, n), causal_visibility(past, n - past), back + 1)
        check_finite(rows, "draft", range(n - 1 - back, n), at=label(step), nodes=None if back else [0])
        looked_back, root = sampling.laws(rows[:-1]), rows[-1:]  # [back, V], [1, V]
        for s in growing:
            logits[s].append(root)
    width = 1
    while growing:
        levels = {}
        stopped = set()
        for s in growing:
            laws[s].append(sampling.laws(logits[s][-1]))
            start = trees[s].level_starts[-2]
            levels[s] = grow_level(trees[s], laws[s][-1], plans[s].scheme, plans[s].generator)
            tau = plans[s].min_probability
            if tau > 0 and doubted(trees[s], laws[s][-1], levels[s], start, tau):
                stopped.add(s)
        # the new level are leaves where the shape or the draft's doubt ends the tree: never read
        growing = [s for s in growing if s not in stopped and trees[s].pending()]
        if not growing:
            break
        members = [(s, levels[s]) for s in growing]
        for s, nodes in members:
            keys[s] += range(width, width + nodes.stop - nodes.start)
            width += nodes.stop - nodes.start
        visible = tree_visibility(trees, members, keys, n - 1, width)
        tokens = torch.cat([trees[s].tokens[nodes] for s, nodes in members])
        positions = torch.cat([trees[s].positions(nodes, root_position=n - 1) for s, nodes in members])
        read = draft.forward(tokens, positions, visible, tokens.shape[0])  # [Q, V]
        check_finite(
            read,
            "draft",
            positions,
            at=label(step),
            nodes=[node for _, nodes in members for node in range(nodes.start, nodes.stop)],
        )
        counts = [nodes.stop - nodes.start for _, nodes in members]
        for (s, _), rows in zip(members, read.split(counts)):
            logits[s].append(rows)
    join = [(torch.cat(q), torch.cat(raw)) if q else (None, None) for q, raw in zip(laws, logits)]
    return trees, [q for q, _ in join], [raw for _, raw in join], keys, looked_back


def score_trees(
    target: Runner, seq: torch.Tensor, trees: Sequence[Tree], *, back: int = 0, step: int | None = None
) -> tuple[list[torch.Tensor], list[list[int]], torch.Tensor]:
    """Target logits [N_s, V] at every node of every tree (row 0: the root) in one forward, the keys, and the
    logits [k, V] at the last k <= ``back`` committed tokens before the root that the forward reads.

    The query is ``seq[cache length:]`` (root last, causal), then every non-root node in level-major order.
    """
    n, past = seq.shape[0], target.cached()
    members = [
        (s, tree.level(depth))
        for depth in range(1, max(tree.depth for tree in trees) + 1)
        for s, tree in enumerate(trees)
        if depth <= tree.depth
    ]
    keys = [[0] * tree.size for tree in trees]
    width = 1
    for s, nodes in members:
        keys[s][nodes] = range(width, width + nodes.stop - nodes.start)
        width += nodes.stop - nodes.start
    committed = torch.nn.functional.pad(causal_visibility(past, n - past), (0, width - 1))  # [n - past, n - 1 + width]
    visible = torch.cat([committed, tree_visibility(trees, members, keys, n - 1, width)])
    tokens = torch.cat([seq[past:], *(trees[s].tokens[nodes] for s, nodes in members)])
    positions = torch.cat(
        [
            torch.arange(past, n, device=seq.device),
            *(trees[s].positions(nodes, root_position=n - 1) for s, nodes in members),
        ]
    )
    back = min(back, n - 1 - past)
    rows = target.forward(tokens, positions, visible, back + width)  # [back + width, V]
    check_finite(rows, "target", positions[-width - back :], at=label(step), nodes=range(width) if width > 1 else None)
    earlier, logits = rows[:back], rows[back:]  # [back, V], [width, V] (row 0 the root)
    if len(trees) == 1:
        return [logits], keys, earlier
    return [logits[keys[s]] for s in range(len(trees))], keys, earlier


def speculative_step(
    target: Runner,
    draft: Runner | None,
    seq: torch.Tensor,
    plans: Sequence[TreePlan],
    sampling: Sampling,
    verifier: Verifier,
    generator: torch.Generator | None,
    *,
    driver: int = 0,
    step: int | None = None,
    lap: Callable[[str], None] = lambda phase: None,
) -> Step:
    """Draft every plan's tree, score them, verify tree ``driver`` with ``generator`` and cut both caches to
    its accepted path (module docstring).  ``lap`` marks the end of the "draft", "target" and
    "verification" phases (a stopwatch)."""
    n = seq.shape[0]
    trees, q, draft_logits, draft_keys, looked_back = draft_trees(draft, seq, plans, sampling, step=step)
    lap("draft")
    back = 0 if looked_back is None else looked_back.shape[0]
    target_logits, target_keys, earlier = score_trees(target, seq, trees, back=back, step=step)
    p = [sampling.laws(rows) for rows in target_logits]  # [N_s, V] per tree
    target_looked_back = None if looked_back is None else sampling.laws(earlier)  # [k', V]
    lap("target")
    copied = {s: point_masses(trees[s], p[s]) for s, plan in enumerate(plans) if plan.lookup}  # [d_s, V]
    q = [copied[s] if s in copied else p[s][:0] if laws is None else laws for s, laws in enumerate(q)]
    draft_logits = [
        copied[s].log() if s in copied else target_logits[s][:0] if rows is None else rows
        for s, rows in enumerate(draft_logits)
    ]  # plain decoding: no draft rows; copied drafts: the log of their point masses
    plan, tree = plans[driver], trees[driver]
    walk = judge(plan, verifier, tree).verify(tree, plan.scheme, p[driver], q[driver], generator)
    target.keep_path(n, [n - 1 + target_keys[driver][node] for node in walk.path])
    if looked_back is not None:  # the draft was called
        keys = draft_keys[driver]
        draft.keep_path(n, [n - 1 + keys[node] for node in walk.path if node < len(keys)])
    lap("verification")
    return Step(plans, trees, q, draft_logits, p, target_logits, driver, walk, looked_back, target_looked_back)
