"""Paired per-context comparison of verification schemes (``multidraft bench paired``).

Comparing two schemes by separate end-to-end runs leaves most of the noise
in the difference: each run sees other contexts and other drafts.  Here the
schemes are compared **at the same contexts**.  Generation goes step by step;
at each step every draft law drafts its own tree from the same committed
text, the target scores it, and each compared verifier's exact expected
number of tokens given that same tree and p, q at its nodes is recorded (the Rao-Blackwellised tokens per
step, :meth:`multidraft.verifiers.base.Verifier.expected_tokens`), for the
tree and for its cuts at every smaller depth (a uniform ``KxD`` tree cut at
depth d is distributed as a ``Kxd`` tree, so one run measures every depth).
Then one of the schemes, rotating from step to step, verifies its tree for
real and the text moves on; every scheme is lossless, so the committed text
has the target's law whichever scheme drove it.

The estimate for a scheme and depth is the mean over the shared steps of its
expected tokens: the expected tokens per target call at contexts drawn as the
decoder meets them.  Differences between schemes are paired step by step, and
their intervals bootstrap prompts (steps clustered by prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multidraft import schemes, verifiers
from multidraft.bench.stats import paired_ratio_difference, ratio_interval
from multidraft.decoding import Sampling, check_request, draft_tree, keep_path, new_cache, score_tree
from multidraft.execution import prepare
from multidraft.tree import check_shape, parse_shape, shape_depth


def entry(name: str) -> tuple[str, str]:
    """``"scheme"`` or ``"scheme:verifier"`` -> (scheme, verifier); the token walk by default."""
    scheme, _, verifier = name.partition(":")
    return scheme, verifier or "token"


def check_plan(names: Sequence[str], tree: str) -> None:
    """Every entry (``scheme[:verifier]``) fits the (uniform) tree; ``ValueError`` otherwise."""
    shape = parse_shape(tree)
    if not isinstance(shape, tuple):
        raise ValueError("the paired comparison cuts uniform trees by depth; give a shape like 2x3")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"give at least two distinct entries to compare, got {list(names)}")
    for name in names:
        scheme, verifier = entry(name)
        check_shape(shape, schemes.get(scheme))
        verifiers.get(verifier).check(shape, schemes.get(scheme))


@torch.no_grad()
def paired_steps(target, draft, prompt: torch.Tensor, *, names: Sequence[str], tree: str, temperature: float,
                 new_tokens: int, seed: int, top_k=None, top_p=None) -> dict:
    """One prompt: ``{"expected": {name: {depth: [E tokens per step]}}, "tokens": [...]}`` (see module docstring).

    ``names`` are ``scheme`` or ``scheme:verifier`` entries (:func:`entry`).
    """
    check_plan(names, tree)
    shape = parse_shape(tree)
    seq, _ = check_request(target, prompt, new_tokens, temperature, top_k, top_p, None, None)
    prepare(target)
    prepare(draft)
    device = target.device
    sampling = Sampling(temperature, top_k, top_p, device, torch.promote_types(target.dtype, torch.float32))
    generator = torch.Generator(device=device).manual_seed(seed)
    target_cache, draft_cache = new_cache(), new_cache()
    expected = {name: {depth: [] for depth in range(1, shape_depth(shape) + 1)} for name in names}
    out: list[int] = []
    step = 0
    drafted_by = list(dict.fromkeys(entry(name)[0] for name in names))  # each draft law drafts once per step
    while len(out) < new_tokens:
        n = seq.shape[0]
        driver = names[step % len(names)]
        driver_scheme = entry(driver)[0]
        for scheme_name in [other for other in drafted_by if other != driver_scheme] + [driver_scheme]:
            scheme = schemes.get(scheme_name)
            drafted, _, q = draft_tree(draft, draft_cache, seq, shape, scheme, sampling, generator, step=step + 1)
            p = sampling.laws(score_tree(target, target_cache, seq, drafted, step=step + 1))  # [N, V]
            for name in (name for name in names if entry(name)[0] == scheme_name):  # same tree, each verifier
                rule = verifiers.get(entry(name)[1])
                for depth in range(1, drafted.depth + 1):
                    cut = drafted.truncated(depth)
                    expected[name][depth].append(rule.expected_tokens(cut, scheme, p[: cut.size], q[: cut.n_internal]))
                for depth in range(drafted.depth + 1, shape_depth(shape) + 1):  # merged drafts ended the tree early
                    expected[name][depth].append(expected[name][drafted.depth][-1])
            if scheme_name != driver_scheme:  # back to the committed text, root unread, for the next draft law
                keep_path(target_cache, n - 1, [])
                keep_path(draft_cache, n - 1, [])
        walk = verifiers.get(entry(driver)[1]).verify(drafted, scheme, p, q, generator)
        keep_path(target_cache, n, [n - 1 + node for node in walk.path])
        keep_path(draft_cache, n, [n - 1 + node for node in walk.path if node < drafted.n_internal])
        seq = torch.cat([seq, torch.tensor(walk.tokens, device=device)])
        out += walk.tokens
        step += 1
    return {"expected": expected, "tokens": out[:new_tokens]}


def comparisons(names: Sequence[str]) -> list[tuple[str, str]]:
    """The first entry against each other, and each ``scheme:verifier`` against its ``scheme`` (token walk)."""
    pairs = [(names[0], other) for other in names[1:]]
    for name in names:
        scheme, verifier = entry(name)
        if verifier != "token" and scheme in names and (name, scheme) not in pairs:
            pairs.append((name, scheme))
    return pairs


def summarise(records: Sequence[dict], names: Sequence[str], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Rows per (temperature, entry, depth) and the paired differences of :func:`comparisons`."""
    rows, gains = [], []
    for temperature in sorted({r["temperature"] for r in records}):
        chosen = sorted((r for r in records if r["temperature"] == temperature), key=lambda r: r["prompt"])
        depths = sorted(int(d) for d in chosen[0]["expected"][names[0]])
        for depth in depths:
            sums = {name: ([sum(r["expected"][name][str(depth)]) for r in chosen],
                           [len(r["expected"][name][str(depth)]) for r in chosen]) for name in names}
            for name in names:
                total, steps = sums[name]
                rows.append({"temperature": temperature, "scheme": name, "depth": depth, "prompts": len(chosen),
                             "steps": sum(steps), "expected_tokens_per_step": sum(total) / sum(steps),
                             "ci95": ratio_interval(total, steps, seed)})
            for a, b in comparisons(names):
                delta, interval = paired_ratio_difference(sums[a], sums[b], seed)
                gains.append({"temperature": temperature, "depth": depth, "comparison": f"{a} - {b}",
                              "prompts": len(chosen), "delta": delta, "ci95": interval})
    return rows, gains
