"""Predicted tokens per step, seconds per step and tokens/s of any (scheme, tree) on a profiled machine.

**Tokens per step.**  Expand the shape into template nodes.  A non-root node
v, draft i of its parent u (which draws k_u drafts), is reached with
probability reach(v) = reach(u) * accept_{k_u}[i] and exists with probability
exist(v) = exist(u) * new_{k_u}[i] (:mod:`multidraft.planning.acceptance`).
Then E[tokens per step] = 1 + sum_v reach(v) (the accepted drafts, plus the
residual or bonus token), the expected nodes of level d are sum_{v at d}
exist(v), the walk verifies at sum_{u with drafts} reach(u) nodes and ends
at a leaf with probability sum_{leaves} reach(v).

**Seconds per step** (:class:`multidraft.planning.profile.Profile`): the
draft reads 1 + P(last walk ended at a leaf) committed tokens at the root,
then every level whose nodes draw drafts; the target reads the root and
every node (its cache lacks only the root); plus the per-step overheads:
laws of every scored row, drafting per level, verification per visited
node, growing the tree per level and cutting both caches.

**Tokens/s** of a whole generation of L tokens from an n-token prompt:
L / (prefill + steps x seconds per step), with steps = L / E[tokens per
step], the prefill the first forwards over the prompt, and the context at
its mean n + L / 2.  Autoregressive sampling is the chain of depth 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multidraft.planning.acceptance import RankRates
from multidraft.planning.profile import Profile
from multidraft.shapes import TreeShape, template_of


@dataclass(frozen=True)
class StepPrediction:
    tokens: float  # E[tokens per step]
    seconds: float  # seconds per step
    level_nodes: tuple[float, ...]  # E[nodes] at depths 0..D
    verified: float  # E[nodes verified]
    leaf_end: float  # P(the walk ends at a leaf)


def _starts(rates: RankRates, depth: int) -> np.ndarray | None:
    """Recorded positions t with t .. t + depth - 1 in one text (None without per-position rates)."""
    if rates.sequence is None:
        return None
    sequence = np.asarray(rates.sequence)
    starts = np.arange(len(sequence) - depth + 1)
    return starts[sequence[starts] == sequence[starts + depth - 1]]


def _mean(values, weights) -> float:
    """The mean over recorded starts of a per-start array (a plain number as it is), with the starts' weights."""
    if np.ndim(values) == 0 or weights is None or weights.sum() <= 0:
        return float(np.mean(values))
    return float(np.average(values, weights=weights))


def _rank_rates(rates: RankRates, scheme: str, k: int, depth: int, starts):
    """accept[i] for a node at ``depth``: the mean, or per start t the rate at position t + depth ([T, k])."""
    if starts is None:
        return rates.accept(scheme, k)
    by_position = np.asarray(rates.rates[f"{scheme}:{k}"]["by_position"])  # [P, k]
    return list(by_position[starts + depth].T)  # k arrays [T]


@dataclass(frozen=True)
class TreeRates:
    """What a tree's rates give, per recorded start where the rates are per position (else plain numbers):
    E tokens, E nodes verified and P(leaf end); E nodes per level; whether the draft reads each level; and
    per depth d = 1..D the chance the walk reaches depth d (the sum of reach(v) over the nodes at d; the
    walk follows one path, so these are disjoint), whose sum is E tokens - 1."""

    tokens: np.ndarray | float
    verified: np.ndarray | float
    leaf_end: np.ndarray | float
    level_nodes: list[float]
    read: list[bool]
    starts: np.ndarray | None  # the recorded starts the arrays run over
    depth_reach: list  # [D] P(the walk reaches depth d), each [T] or a plain number


def tree_rates(rates: RankRates, scheme: str, shape: TreeShape) -> TreeRates:
    """The reach probabilities of every template node (module docstring), per recorded start."""
    template = template_of(shape)
    starts = _starts(rates, template.depth)
    if starts is not None and len(starts) == 0:
        starts = None  # no recorded text as long as the tree is deep: fall back to the mean rates
    reach = [1.0]  # per template node, breadth first
    verified, leaf_end, read, depth_reach = 0.0, 0.0, [], []
    start = 0
    for depth, level in enumerate(template.levels):
        read.append(any(k > 0 for k in level))
        next_reach = []
        for offset, k in enumerate(level):
            node = start + offset
            if k == 0:
                leaf_end += reach[node]
                continue
            verified += reach[node]
            next_reach += [reach[node] * a for a in _rank_rates(rates, scheme, k, depth, starts)]
        start += len(level)
        reach += next_reach
        depth_reach.append(sum(next_reach))
    leaf_end += sum(reach[start:])  # the last level: all leaves
    level_nodes = expected_level_nodes(shape, lambda k: rates.new(scheme, k))
    return TreeRates(1.0 + sum(reach[1:]), verified, leaf_end, level_nodes, read, starts, depth_reach)


def expected_level_nodes(shape: TreeShape, new, duplicates: float = 1.0) -> list[float]:
    """E nodes per level 0..D: node v, draft i of its parent u, exists with probability exist(u) * new_k[i]
    (``new(k)``: the chance that draft i of k differs from drafts 0..i-1, which then merge into one child).
    With ``duplicates`` s, every chance of a repeat 1 - new_k[i] is taken s times (at most 1): how much more
    often (s > 1) or less often (s < 1) this text repeats a draft than the recorded texts did on average."""
    exist, level_nodes, start = [1.0], [1.0], 0  # per template node, breadth first
    for level in template_of(shape).levels:
        born = []
        for offset, k in enumerate(level):
            if k > 0:
                chances = new(k) if duplicates == 1.0 else [1.0 - min(1.0, duplicates * (1.0 - n)) for n in new(k)]
                born += [exist[start + offset] * n for n in chances]
        start += len(level)
        exist += born
        level_nodes.append(sum(born))
    return level_nodes


@dataclass(frozen=True)
class StopChainRates:
    """A chain of at most ``depth`` drafts stopped on the draft's confidence, per recorded start t:
    E tokens, E nodes verified, P(the walk ends at a leaf) [T], the law of the chain's length [T, depth],
    and the chance the walk reaches depth d = 1..depth [T, depth]."""

    tokens: np.ndarray
    verified: np.ndarray
    leaf_end: np.ndarray
    lengths: np.ndarray
    starts: np.ndarray
    depth_reach: np.ndarray


def stop_chain_rates(stops: dict, agreement, sequence, tau: float, depth: int) -> StopChainRates:
    """Rates of a chain stopped at threshold ``tau`` (:func:`multidraft.planning.acceptance.stop_rates`).

    The draft at depth d of a chain started at recorded position t sees position t + d - 1, with
    a = sum min(p, q) (accepted), beta = sum_{q >= tau} min(p, q) (accepted and the chain goes on) and
    c = sum_{q >= tau} q (the chain goes on).  With B_d = beta_1 ... beta_d and C_d = c_1 ... c_d:

    * E tokens = 1 + sum_{d=1}^{D} B_{d-1} a_d (draft d counts if drafts 1..d-1 were accepted and
      confident and draft d is accepted: the walk reaches depth d with probability B_{d-1} a_d);
    * E nodes verified = 1 + sum_{d=1}^{D-1} B_d (the root, and node d when the walk reaches it and it
      has a child);
    * P(leaf end) = sum_{d<D} B_{d-1} (a_d - beta_d) + B_{D-1} a_D (all drafts accepted);
    * P(length L) = C_{L-1} (1 - c_L) for L < D, C_{D-1} for L = D.

    Starts are the positions whose next ``depth`` positions lie in one recorded text, as for trees.
    """
    column = list(stops["thresholds"]).index(tau)
    beta = np.asarray(stops["accept"][column])  # [P]
    going = np.asarray(stops["continue"][column])  # [P]
    agree = np.asarray(agreement)  # [P]
    sequence = np.asarray(sequence)
    starts = np.arange(len(sequence) - depth + 1)
    starts = starts[sequence[starts] == sequence[starts + depth - 1]]
    window = starts[:, None] + np.arange(depth)  # [T, D]
    a, b, c = agree[window], beta[window], going[window]
    before = np.cumprod(np.concatenate([np.ones((len(starts), 1)), b[:, :-1]], 1), 1)  # B_{d-1} [T, D]
    depth_reach = before * a  # [T, D]
    tokens = 1.0 + depth_reach.sum(1)
    verified = 1.0 + (before[:, 1:]).sum(1)  # B_d for d = 1..D-1
    last = np.concatenate([np.clip(a[:, :-1] - b[:, :-1], 0.0, None), a[:, -1:]], 1)  # [T, D]
    leaf_end = (before * last).sum(1)
    reached = np.cumprod(np.concatenate([np.ones((len(starts), 1)), c[:, :-1]], 1), 1)  # C_{L-1} [T, D]
    ends = np.concatenate([np.clip(1.0 - c[:, :-1], 0.0, None), np.ones((len(starts), 1))], 1)
    return StopChainRates(tokens, verified, leaf_end, reached * ends, starts, depth_reach)


def linear_step_seconds(
    profile: Profile, scheme: str, shape: TreeShape, level_nodes, read, context: float
) -> tuple[float, float, float]:
    """(fixed, per verified node, per unit of P(leaf end)): :func:`step_seconds` is linear in the nodes
    verified and, since the draft's root read of 1 + P(leaf end) queries lies between the profile's
    grid points 1 and 2, in P(leaf end); three evaluations give its coefficients."""
    fixed = step_seconds(profile, scheme, shape, level_nodes, 0.0, 0.0, read, context)
    verified = step_seconds(profile, scheme, shape, level_nodes, 1.0, 0.0, read, context) - fixed
    leaf_end = step_seconds(profile, scheme, shape, level_nodes, 0.0, 1.0, read, context) - fixed
    return fixed, verified, leaf_end


def context_breakpoints(profile: Profile) -> np.ndarray:
    """The contexts where the profile's interpolation changes slope: between two of them (and beyond the
    ends) every forward cost, so every step's seconds, is linear in the context."""
    return np.unique(np.concatenate([profile.target.contexts, profile.draft.contexts]).astype(np.float64))


def expected_tree(
    rates: RankRates, scheme: str, shape: TreeShape
) -> tuple[float, list[float], float, float, list[bool]]:
    """(E tokens, E nodes per level, E verified nodes, P(leaf end), whether each level is read by the draft).

    With per-position rates the reach probabilities are arrays over the
    recorded starting positions and their means are returned, weighted by the
    starts' weights where the rates carry them (:meth:`RankRates.weighted`).
    """
    tree = tree_rates(rates, scheme, shape)
    weights = None if tree.starts is None or rates.weights is None else np.asarray(rates.weights)[tree.starts]
    return (
        _mean(tree.tokens, weights),
        tree.level_nodes,
        _mean(tree.verified, weights),
        _mean(tree.leaf_end, weights),
        tree.read,
    )


def step_seconds(
    profile: Profile, scheme: str, shape: TreeShape, level_nodes, verified: float, leaf_end: float, read, context: float
) -> float:
    """Seconds of one step (see module docstring)."""
    template = template_of(shape)
    over = profile.overheads
    nodes = sum(level_nodes)
    seconds = profile.target(nodes, context)  # the root and every node
    internal = 0.0
    for depth, level in enumerate(template.levels):
        if not read[depth]:
            break
        queries = 1.0 + leaf_end if depth == 0 else level_nodes[depth]
        seconds += profile.draft(queries, context)
        internal += level_nodes[depth]
        for k in sorted({k for k in level if k > 0}):
            share = sum(1 for x in level if x == k) / len(level)
            per_call, per_row = over["drafts"][f"{scheme}:{k}"]
            seconds += per_call + per_row * level_nodes[depth] * share
        seconds += over["tree_level"]
    ks = [k for level in template.levels for k in level if k > 0]
    verify = sum(over["verify"][f"{scheme}:{k}"] for k in ks) / len(ks)
    seconds += verify * verified
    seconds += 2 * over["laws_call"] + over["laws_row"] * (nodes + internal)
    seconds += 2 * over["keep_path"]
    return seconds


def copy_step_seconds(profile: Profile, depth: int, verified: float, context: float) -> float:
    """Seconds of a step that verifies a chain of ``depth`` drafts copied from the text (:mod:`multidraft.lookup`):
    one target forward over the root and the chain, its laws, the token walk at E ``verified`` nodes and the
    cut; no draft forward."""
    over = profile.overheads
    seconds = profile.target(depth + 1, context) + over["tree_level"] * depth
    seconds += over["verify"]["sps:1"] * verified + over["laws_call"] + over["laws_row"] * (depth + 1)
    return seconds + over["keep_path"]


def predict_step(profile: Profile, rates: RankRates, scheme: str, shape: TreeShape, context: float) -> StepPrediction:
    tokens, level_nodes, verified, leaf_end, read = expected_tree(rates, scheme, shape)
    seconds = step_seconds(profile, scheme, shape, level_nodes, verified, leaf_end, read, context)
    return StepPrediction(tokens, seconds, tuple(level_nodes), verified, leaf_end)


def autoregressive_step(profile: Profile, context: float) -> float:
    """Seconds per token of plain sampling: one 1-token target forward, one law, one draw."""
    over = profile.overheads
    return profile.target(1, context) + over["laws_call"] + over["laws_row"] + over["drafts"]["sps:1"][0]


def generation_seconds(step: float, tokens_per_step: float, prefill: float, new_tokens: int) -> float:
    return prefill + new_tokens / tokens_per_step * step


def predict_generation(
    profile: Profile,
    rates: RankRates | None,
    scheme: str | None,
    shape: TreeShape | None,
    prompt_tokens: int,
    new_tokens: int,
) -> dict:
    """Predicted seconds and tokens/s of one generation; ``scheme=None`` is autoregressive sampling."""
    context = prompt_tokens + new_tokens / 2
    if scheme is None:
        prefill = profile.target(prompt_tokens, 0)
        step = autoregressive_step(profile, context)
        seconds = prefill + (new_tokens - 1) * step
        return {
            "tokens_per_step": 1.0,
            "step_seconds": step,
            "seconds": seconds,
            "tokens_per_second": new_tokens / seconds,
            "decode_tokens_per_second": 1 / step,
        }
    prediction = predict_step(profile, rates, scheme, shape, context)
    prefill = profile.target(prompt_tokens, 0) + profile.draft(prompt_tokens, 0)
    seconds = generation_seconds(prediction.seconds, prediction.tokens, prefill, new_tokens)
    return {
        "tokens_per_step": prediction.tokens,
        "step_seconds": prediction.seconds,
        "seconds": seconds,
        "tokens_per_second": new_tokens / seconds,
        "decode_tokens_per_second": prediction.tokens / prediction.seconds,
        "nodes": sum(prediction.level_nodes),
    }
