"""``multidraft plan``: the (scheme, tree) with the most predicted tokens/s on this machine.

Candidates, per scheme (:data:`multidraft.planning.acceptance.PLANNED`):

* chains ``1xD`` (D = 1..10) for the schemes that draw one draft;
* uniform trees ``KxD`` for every k the scheme takes, up to ``max_nodes``;
* per-node trees grown greedily, Sequoia-style (arXiv 2402.12374): starting
  from the root, repeatedly add the child that most raises the expected
  tokens per step, reach(parent) x accept[rank of the new child], up to
  ``max_nodes`` nodes and depth 8; every intermediate tree is a candidate.
  The growth uses the rates of the largest k (for ``rrs``, ``rrs-wor`` and
  ``topk`` the chance to enter child i does not depend on how many drafts
  follow it); each candidate is then scored with the rates of its own
  per-node draft counts.  SpecHub (k = 2 only) adds both drafts of a node at
  once.

Each candidate's tokens per step, seconds per step and tokens/s come from
:mod:`multidraft.planning.cost`; the planner ranks by predicted decoding
tokens/s (prefill excluded: it is the same for every candidate) and reports
the whole-generation prediction as well.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from multidraft.planning.acceptance import PLANNED, RankRates
from multidraft.planning.cost import predict_generation, predict_step, template_of
from multidraft.planning.profile import Profile
from multidraft.tree import TreeShape, TreeTemplate, format_shape

MAX_DEPTH = 8


@dataclass(frozen=True)
class Choice:
    scheme: str
    shape: TreeShape
    tokens_per_step: float
    step_seconds: float

    @property
    def tree(self) -> str:
        return format_shape(self.shape)

    @property
    def tokens_per_second(self) -> float:
        """Predicted decoding tokens/s (prefill excluded)."""
        return self.tokens_per_step / self.step_seconds


def uniform_shapes(ks, max_nodes: int) -> list[tuple[int, ...]]:
    shapes = []
    for k in ks:
        depth, nodes, width = 0, 1, 1
        while depth < (10 if k == 1 else MAX_DEPTH):
            width *= k
            nodes += width
            if nodes > max_nodes:
                break
            depth += 1
            shapes.append((k,) * depth)
    return shapes


def grown_templates(rates: RankRates, scheme: str, max_nodes: int) -> list[TreeTemplate]:
    """The greedy growth sequence of per-node trees (see module docstring)."""
    ks = PLANNED[scheme]
    widest = max(ks)
    accept = rates.accept(scheme, widest)
    pair = ks == (2,)  # spechub: a node draws 0 or 2 drafts
    # nodes: (parent, rank, depth, reach); drafts per node grow one rank at a time
    nodes = [(-1, -1, 0, 1.0)]
    drafts = [0]
    gain = accept[0] + accept[1] if pair else accept[0]  # what drafting at a node reached for sure adds
    frontier = [(-gain, 0)]
    templates = []
    while frontier and len(nodes) < max_nodes:
        _, parent = heapq.heappop(frontier)
        _, _, depth, reach = nodes[parent]
        ranks = [0, 1] if pair else [drafts[parent]]
        for rank in ranks:
            nodes.append((parent, rank, depth + 1, reach * accept[rank]))
            drafts.append(0)
            if depth + 1 < MAX_DEPTH:
                child = len(nodes) - 1
                heapq.heappush(frontier, (-reach * accept[rank] * gain, child))
        drafts[parent] += len(ranks)
        if not pair and drafts[parent] < widest:
            heapq.heappush(frontier, (-reach * accept[drafts[parent]], parent))
        templates.append(_as_template(nodes, drafts))
    return templates


def _as_template(nodes, drafts) -> TreeTemplate:
    """Breadth-first levels of draft counts: children in parent order, then rank order."""
    children: dict[int, list[int]] = {}
    for index, (parent, _, _, _) in enumerate(nodes):
        if parent >= 0:
            children.setdefault(parent, []).append(index)
    levels, level = [], [0]
    while any(drafts[n] for n in level):
        levels.append(tuple(drafts[n] for n in level))
        level = [c for n in level for c in sorted(children.get(n, []), key=lambda c: nodes[c][1])]
    return TreeTemplate(tuple(levels))


def candidates(rates: RankRates, scheme: str, max_nodes: int) -> list[TreeShape]:
    shapes: list[TreeShape] = list(uniform_shapes(PLANNED[scheme], max_nodes))
    seen = {template_of(shape).levels for shape in shapes}  # a grown tree may be a uniform one again
    if scheme in ("rrs", "rrs-wor", "topk", "spechub"):
        for template in grown_templates(rates, scheme, max_nodes):
            if template.levels not in seen:
                seen.add(template.levels)
                shapes.append(template)
    return shapes


def plan(profile: Profile, rates: RankRates, *, schemes=tuple(PLANNED), context: float = 200.0,
         max_nodes: int = 64) -> list[Choice]:
    """Every candidate of every scheme, best predicted decoding tokens/s first."""
    choices = []
    for scheme in schemes:
        for shape in candidates(rates, scheme, max_nodes):
            step = predict_step(profile, rates, scheme, shape, context)
            choices.append(Choice(scheme, shape, step.tokens, step.seconds))
    return sorted(choices, key=lambda c: -c.tokens_per_second)


def best_per_scheme(choices: list[Choice]) -> list[Choice]:
    best: dict[str, Choice] = {}
    for choice in choices:
        best.setdefault(choice.scheme, choice)
    return sorted(best.values(), key=lambda c: -c.tokens_per_second)


def plan_rows(profile: Profile, rates: RankRates, choices: list[Choice], prompt_tokens: int, new_tokens: int) -> list[dict]:
    """Table rows: prediction of each choice for a whole generation, beside autoregressive sampling."""
    base = predict_generation(profile, None, None, None, prompt_tokens, new_tokens)
    rows = [{"scheme": "autoregressive", "tree": "", **base, "speedup": 1.0}]
    for choice in choices:
        whole = predict_generation(profile, rates, choice.scheme, choice.shape, prompt_tokens, new_tokens)
        rows.append({"scheme": choice.scheme, "tree": choice.tree, **whole,
                     "speedup": whole["tokens_per_second"] / base["tokens_per_second"]})
    return rows
