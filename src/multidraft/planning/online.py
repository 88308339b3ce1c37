"""Online planning: each step's tree, or plain decoding, chosen from the prior and the steps so far.

**Candidates.**  Plain decoding, and for every planned scheme the chains and
uniform trees of at most ``max_nodes`` nodes
(:func:`multidraft.planning.planner.uniform_shapes`).  For each candidate c
and each recorded prompt j of the prior, :class:`PlanTable` holds the
expected tokens per step, nodes verified and chance of ending at a leaf,
averaged over j's recorded starts (:func:`multidraft.planning.cost.tree_rates`).
The table depends on the prior only and is built once.

**Re-planning** every ``every`` steps: the posterior weights w of the
recorded prompts given the agreements seen so far
(:meth:`multidraft.planning.prior.Prior.posterior`) mix the table,
E_w[tokens | c] = sum_j w_j tokens[c, j], and the profile turns each
candidate into seconds per step at the current context
(:func:`multidraft.planning.cost.step_seconds`).  A draft that lags behind
(at the first step, or after plain steps) first reads what it lacks; that
cost is spread over the tokens still to generate.  The best speculative
candidate runs only if it is predicted faster than plain decoding with
margins for the prediction's uncertainty: its seconds :data:`COST_MARGIN`
high (the cost model's error), and, once :data:`MIN_EVIDENCE` agreements
have been seen, its tokens per step one posterior standard deviation low.
Before that the posterior's mean decides: the prior mixes prompts of every
kind, and its spread alone would keep speculation from ever starting, so
from ever gathering the evidence that tells the kinds apart.  Otherwise the
step decodes plainly.

**Lossless.**  The plan of step s is a function of the tokens committed and
the laws seen at steps before s only; it is fixed before step s draws its
drafts.  Given the committed text, step s is then a lossless step of a fixed
(scheme, tree) or a plain draw from p, so its emitted tokens have the
target's law given that text, and by the chain rule so does the whole output.

**Evidence.**  After a speculative step, the agreement sum_y min(p, q) at the
nodes the walk visited (the root and the accepted drafts with children):
positions of text with the target's law, as recorded positions are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from multidraft import schemes
from multidraft.planning.acceptance import PLANNED
from multidraft.planning.cost import autoregressive_step, step_seconds, tree_rates
from multidraft.planning.planner import uniform_shapes
from multidraft.planning.prior import Prior
from multidraft.planning.profile import Profile
from multidraft.shapes import TreeShape
from multidraft.step import Step, TreePlan

#: Relative error allowed for the cost model's seconds per step before speculation is chosen.
COST_MARGIN = 0.12
#: Steps between re-plans.
EVERY = 4
#: Agreements observed before the posterior's spread counts against speculation (until then: its mean).
MIN_EVIDENCE = 8
#: Largest tree considered online.
MAX_NODES = 64


@dataclass(frozen=True)
class Candidate:
    """A speculative configuration, or plain decoding (``scheme=None``)."""

    scheme: str | None
    shape: TreeShape | None


@dataclass
class PlanTable:
    """Per candidate c and recorded prompt j: E tokens per step, E nodes verified, P(leaf end) (module docstring)."""

    candidates: list[Candidate]
    tokens: np.ndarray  # [C, J]
    verified: np.ndarray  # [C, J]
    leaf_end: np.ndarray  # [C, J]
    level_nodes: list[list[float]]  # [C] E nodes per level (the rates' means)
    read: list[list[bool]]  # [C]

    @classmethod
    def of(cls, prior: Prior, candidates: Sequence[Candidate]) -> PlanTable:
        prompts = prior.prompts
        count = int(prompts.max()) + 1
        rows = {"tokens": [], "verified": [], "leaf_end": []}
        level_nodes, read = [], []
        for candidate in candidates:
            tree = tree_rates(prior.rates, candidate.scheme, candidate.shape)
            for name in rows:
                rows[name].append(per_prompt(getattr(tree, name), tree.starts, prompts, count))
            level_nodes.append(tree.level_nodes)
            read.append(tree.read)
        return cls(list(candidates), *(np.array(rows[name]) for name in rows), level_nodes, read)


def per_prompt(values, starts: np.ndarray | None, prompts: np.ndarray, count: int) -> np.ndarray:
    """Mean per recorded prompt [J] of a per-start array (a plain number: the same for every prompt)."""
    if starts is None or np.ndim(values) == 0:
        return np.full(count, float(np.mean(values)))
    sums = np.bincount(prompts[starts], weights=values, minlength=count)
    counts = np.bincount(prompts[starts], minlength=count)
    overall = float(np.mean(values))
    return np.where(counts > 0, sums / np.maximum(counts, 1), overall)


def candidates_for(scheme: str = "auto", shape: TreeShape | None = None, max_nodes: int = MAX_NODES) -> list[Candidate]:
    """The speculative candidates: every planned scheme's chains and uniform trees, or those of one scheme/shape."""
    names = list(PLANNED) if scheme == "auto" else [scheme]
    out = []
    for name in names:
        shapes = [shape] if shape is not None else uniform_shapes(PLANNED[name], max_nodes)
        out += [Candidate(name, s) for s in shapes]
    return out


@dataclass
class Prediction:
    """What the planner predicted for the plan it chose (tokens per step; 1 for plain decoding)."""

    candidate: Candidate
    tokens_per_step: float
    tokens_per_second: float
    plain_tokens_per_second: float


@dataclass
class OnlinePlanner:
    """The per-step policy of ``scheme="auto"`` (module docstring): call it for a plan, show it each step."""

    profile: Profile
    prior: Prior
    table: PlanTable
    generator: torch.Generator | None
    max_new_tokens: int
    every: int = EVERY
    adapt: bool = True
    min_evidence: int = MIN_EVIDENCE
    observed: list[float] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)  # one per step
    _current: Prediction | None = None
    _plans: dict = field(default_factory=dict)
    _draft_behind: int | None = None  # committed tokens the draft has not read (None: the whole prompt)
    _emitted: int = 0

    def __call__(self, seq: torch.Tensor, steps: Sequence) -> TreePlan:
        if self._draft_behind is None:
            self._draft_behind = seq.shape[0]
        if self._current is None or (self.adapt and len(steps) % self.every == 0):
            self._current = self.choose(seq.shape[0], self.max_new_tokens - self._emitted)
        self.predictions.append(self._current)
        candidate = self._current.candidate
        if candidate not in self._plans:
            scheme = None if candidate.scheme is None else schemes.get(candidate.scheme)
            self._plans[candidate] = TreePlan(scheme, candidate.shape, self.generator)
        return self._plans[candidate]

    def observe(self, step: Step) -> None:
        """Keep the agreements at the nodes the walk visited (module docstring)."""
        self._emitted += len(step.walk.tokens)
        s = step.driver
        if step.plans[s].scheme is None:
            self._draft_behind += len(step.walk.tokens)
            return
        self._draft_behind = 1
        if not step.walk.visited:
            return
        nodes = step.walk.visited
        self.observed += torch.minimum(step.p[s][nodes], step.q[s][nodes]).sum(-1).tolist()

    def choose(self, length: int, remaining: int) -> Prediction:
        context = length + remaining / 2
        weight = self.prior.posterior(self.observed)  # [J]
        tokens = self.table.tokens @ weight  # [C]
        spread = np.sqrt(((self.table.tokens - tokens[:, None]) ** 2) @ weight)  # [C]
        verified, leaf_end = self.table.verified @ weight, self.table.leaf_end @ weight
        plain = 1.0 / autoregressive_step(self.profile, context)
        behind = self._draft_behind or 1
        catch_up = self.profile.draft(behind, context) - self.profile.draft(1, context)  # beyond a step's own read
        best, best_rate = None, 0.0
        for c, candidate in enumerate(self.table.candidates):
            seconds = step_seconds(
                self.profile,
                candidate.scheme,
                candidate.shape,
                self.table.level_nodes[c],
                verified[c],
                leaf_end[c],
                self.table.read[c],
                context,
            )
            rate = remaining / (remaining / tokens[c] * seconds + catch_up)
            if rate > best_rate:
                best, best_rate, best_c, best_seconds = candidate, rate, c, seconds
        if best is not None:
            doubt = spread[best_c] if len(self.observed) >= self.min_evidence else 0.0
            cautious = (tokens[best_c] - doubt) / (best_seconds * (1 + COST_MARGIN))
            if cautious > plain:
                return Prediction(best, float(tokens[best_c]), best_rate, plain)
        return Prediction(Candidate(None, None), 1.0, plain, plain)
