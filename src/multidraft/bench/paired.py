"""Paired per-context comparison of verification schemes (``multidraft bench paired``).

Comparing two schemes by separate end-to-end runs leaves most of the noise
in the difference: each run sees other contexts and other drafts.  Here the
schemes are compared **at the same contexts**.  Generation goes step by step;
at each step every draft law drafts its own tree from the same committed
text, all trees are read together (one draft forward per level, one target
forward: :func:`multidraft.step.speculative_step`), and each compared verifier's exact expected
number of tokens given that same tree and p, q at its nodes is recorded (the Rao-Blackwellised tokens per
step, :meth:`multidraft.verifiers.base.Verifier.expected_tokens`), for the
tree and for its cuts at every smaller depth (a uniform ``KxD`` tree cut at
depth d is distributed as a ``Kxd`` tree, so one run measures every depth).
Then one of the schemes, rotating from step to step, verifies its tree for
real and the text moves on; every scheme is lossless, so the committed text
has the target's law whichever scheme drove it.

The draft laws share their random numbers within a step (common random
numbers): every scheme draws its tree from a generator seeded with the same
per-step seed, and every sampler draws by inverse CDF from ``torch.rand``
in node order, so where the laws agree the trees agree (the first draft at
a node is the same token under the i.i.d., without-replacement and hub
laws).  Each scheme's tree still has exactly its own draft law given the
context, so each estimate is unchanged in expectation; only the noise of
the differences shrinks.  Verification draws from a separate stream.

The estimate for a scheme and depth is the mean over the shared steps of its
expected tokens: the expected tokens per target call at contexts drawn as the
decoder meets them.  For the token walk a second, lower-variance estimate
of the same quantity is recorded, the expected tokens with every node's own
drafts integrated out through the scheme's exact acceptance rate
(:func:`multidraft.verifiers.token.integrated_tokens`); differences use it
where both entries have it.  Differences between schemes are paired step by
step, and their intervals bootstrap prompts (steps clustered by prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multidraft import schemes, verifiers
from multidraft.bench.stats import paired_ratio_difference, ratio_interval
from multidraft.requests import check_request
from multidraft.runners import as_runner
from multidraft.sampling_options import Sampling
from multidraft.shapes import check_shape, parse_shape, shape_depth, uniform_factors
from multidraft.step import TreePlan, speculative_step
from multidraft.verifiers.token import integrated_tokens


def entry(name: str) -> tuple[str, str]:
    """``"scheme"`` or ``"scheme:verifier"`` -> (scheme, verifier); the token walk by default."""
    scheme, _, verifier = name.partition(":")
    return scheme, verifier or "token"


def check_plan(names: Sequence[str], tree: str) -> None:
    """Every entry (``scheme[:verifier]``) fits the (uniform) tree; ``ValueError`` otherwise."""
    shape = parse_shape(tree)
    if uniform_factors(shape) is None:
        raise ValueError("the paired comparison cuts uniform trees by depth; give a shape like 2x3")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"give at least two distinct entries to compare, got {list(names)}")
    for name in names:
        scheme, verifier = entry(name)
        check_shape(shape, schemes.get(scheme))
        verifiers.get(verifier).check(shape, schemes.get(scheme))


@torch.no_grad()
def paired_steps(
    target,
    draft,
    prompt: torch.Tensor,
    *,
    names: Sequence[str],
    tree: str,
    temperature: float,
    new_tokens: int,
    seed: int,
    top_k=None,
    top_p=None,
) -> dict:
    """One prompt: ``{"expected" | "integrated": {name: {depth: [E tokens per step]}}, "tokens": [...]}``.

    ``expected`` is given each drafted tree, ``integrated`` (entries where
    :func:`integrable`) integrates each node's own drafts; see the module docstring.

    ``names`` are ``scheme`` or ``scheme:verifier`` entries (:func:`entry`).
    """
    check_plan(names, tree)
    shape = parse_shape(tree)
    target, draft = as_runner(target), as_runner(draft)
    seq, _ = check_request(target, prompt, new_tokens, temperature, top_k, top_p, None, None)
    device = target.device
    sampling = Sampling.for_runners(temperature, top_k, top_p, target)
    generator = torch.Generator(device=device).manual_seed(seed)
    target.reset()
    draft.reset()
    depths = shape_depth(shape)
    expected = {name: {depth: [] for depth in range(1, depths + 1)} for name in names}
    integrated = {name: {depth: [] for depth in range(1, depths + 1)} for name in names if integrable(name, shape)}
    out: list[int] = []
    step = 0
    drafted_by = list(dict.fromkeys(entry(name)[0] for name in names))  # each draft law drafts once per step
    # one seed per step for all draft laws: common random numbers
    plans = [TreePlan(schemes.get(name), shape, torch.Generator(device=device)) for name in drafted_by]
    while len(out) < new_tokens:
        step_seed = int(torch.randint(2**62, (1,), generator=generator, device=device))
        for plan in plans:
            plan.generator.manual_seed(step_seed)
        driver = names[step % len(names)]
        taken = speculative_step(
            target,
            draft,
            seq,
            plans,
            sampling,
            verifiers.get(entry(driver)[1]),
            generator,
            driver=drafted_by.index(entry(driver)[0]),
            step=step + 1,
        )
        for drafted, plan, p, q in zip(taken.trees, plans, taken.p, taken.q):
            for name in (name for name in names if entry(name)[0] == plan.scheme.name):  # same tree, each verifier
                rule = verifiers.get(entry(name)[1])
                given_tree = [
                    rule.expected_tokens(cut, plan.scheme, p[: cut.size], q[: cut.n_internal])
                    for cut in map(drafted.truncated, range(1, drafted.depth + 1))
                ]
                _append(expected[name], given_tree, depths)
                if name in integrated:
                    _append(integrated[name], integrated_tokens(drafted, plan.scheme, p, q), depths)
        seq = torch.cat([seq, torch.tensor(taken.walk.tokens, device=device)])
        out += taken.walk.tokens
        step += 1
    return {"expected": expected, "integrated": integrated, "tokens": out[:new_tokens]}


def _append(series: dict[int, list[float]], per_depth: Sequence[float], depths: int) -> None:
    """Add one step's values for depths 1..len(per_depth); a tree that ended early (merged drafts) repeats its last."""
    for depth in range(1, depths + 1):
        series[depth].append(per_depth[min(depth, len(per_depth)) - 1])


def integrable(name: str, shape: tuple[int, ...]) -> bool:
    """Whether :func:`~multidraft.verifiers.token.integrated_tokens` applies: the token walk, with a closed-form
    rate at every node's k (not ``otm``; ``rrs-wor`` only with k <= 2 at the models' vocabulary)."""
    scheme, verifier = entry(name)
    return verifier == "token" and scheme != "otm" and (scheme != "rrs-wor" or max(shape) <= 2)


def comparisons(names: Sequence[str]) -> list[tuple[str, str]]:
    """The first entry against each other, and each ``scheme:verifier`` against its ``scheme`` (token walk)."""
    pairs = [(names[0], other) for other in names[1:]]
    for name in names:
        scheme, verifier = entry(name)
        if verifier != "token" and scheme in names and (name, scheme) not in pairs:
            pairs.append((name, scheme))
    return pairs


def _totals(chosen: Sequence[dict], estimator: str, name: str, depth: int) -> tuple[list[float], list[int]] | None:
    """Per prompt (sum over steps, steps) of one estimator's series, or None where a record lacks it."""
    series = [r.get(estimator, {}).get(name, {}).get(str(depth)) for r in chosen]
    if any(s is None for s in series):
        return None
    return [sum(s) for s in series], [len(s) for s in series]


def summarise(records: Sequence[dict], names: Sequence[str], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Rows per (temperature, entry, depth) and the paired differences of :func:`comparisons`.

    Each row gives the mean of the expected tokens given the tree and, where
    recorded, of the integrated estimate; each difference uses the
    integrated estimates when both entries have them (``estimator``), and
    also gives the difference of the given-tree estimates as a cross-check.
    """
    rows, gains = [], []
    for temperature in sorted({r["temperature"] for r in records}):
        chosen = sorted((r for r in records if r["temperature"] == temperature), key=lambda r: r["prompt"])
        depths = sorted(int(d) for d in chosen[0]["expected"][names[0]])
        for depth in depths:
            given = {name: _totals(chosen, "expected", name, depth) for name in names}
            integrated = {name: _totals(chosen, "integrated", name, depth) for name in names}
            for name in names:
                total, steps = given[name]
                row = {
                    "temperature": temperature,
                    "scheme": name,
                    "depth": depth,
                    "prompts": len(chosen),
                    "steps": sum(steps),
                    "expected_tokens_per_step": sum(total) / sum(steps),
                    "ci95": ratio_interval(total, steps, seed),
                    "integrated_tokens_per_step": None,
                    "integrated_ci95": None,
                }
                if integrated[name] is not None:
                    row["integrated_tokens_per_step"] = sum(integrated[name][0]) / sum(steps)
                    row["integrated_ci95"] = ratio_interval(*integrated[name], seed)
                rows.append(row)
            for a, b in comparisons(names):
                both = integrated[a] is not None and integrated[b] is not None
                delta, interval = paired_ratio_difference(*((integrated if both else given)[x] for x in (a, b)), seed)
                given_delta, given_interval = paired_ratio_difference(given[a], given[b], seed)
                gains.append(
                    {
                        "temperature": temperature,
                        "depth": depth,
                        "comparison": f"{a} - {b}",
                        "prompts": len(chosen),
                        "estimator": "integrated" if both else "given tree",
                        "delta": delta,
                        "ci95": interval,
                        "given_tree_delta": given_delta,
                        "given_tree_ci95": given_interval,
                    }
                )
    return rows, gains
