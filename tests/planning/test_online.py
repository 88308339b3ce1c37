"""The prior, its posterior, and the online planner: plain decoding as a candidate, and the target's law kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multidraft import verifiers
from multidraft.decoding import run
from multidraft.planning.acceptance import rank_rates
from multidraft.planning.cost import expected_tree
from multidraft.planning.online import Candidate, OnlinePlanner, PlanTable, candidates_for
from multidraft.planning.prior import Prior
from multidraft.runners import TorchRunner
from tests.support.exact_law import assert_law, sequence_law
from tests.support.planning import linear_profile

V = 8
POSITIONS = 12  # per recorded prompt


def laws(agreeing: bool, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[POSITIONS, V] target and draft rows: the draft close to the target, or on other tokens."""
    p = torch.softmax(torch.randn(POSITIONS, V, generator=generator, dtype=torch.float64) * 2, -1)
    if agreeing:
        q = 0.9 * p + 0.1 / V
    else:
        q = torch.softmax(torch.randn(POSITIONS, V, generator=generator, dtype=torch.float64), -1)
        q = torch.where(p > 1 / V, 0.0, q)  # the draft's mass on tokens the target finds unlikely
        q = q / q.sum(-1, keepdim=True)
    return p, q


@pytest.fixture(scope="module")
def prior() -> Prior:
    """Two recorded prompts: one where the draft agrees with the target (prompt 0), one where it does not."""
    generator = torch.Generator().manual_seed(0)
    (p0, q0), (p1, q1) = laws(True, generator), laws(False, generator)
    p, q = torch.cat([p0, p1]), torch.cat([q0, q1])
    rates = rank_rates(p, q, temperature=1.0, draws=8, sequence=[0] * POSITIONS + [1] * POSITIONS)
    agreement = torch.minimum(p, q).sum(-1).tolist()
    return Prior(rates, agreement, ["easy", "hard"], "synthetic")


def test_the_posterior_follows_the_evidence(prior):
    agreement = np.asarray(prior.agreement)
    assert np.allclose(prior.posterior([]), [0.5, 0.5])
    easy = prior.posterior(agreement[:4])
    hard = prior.posterior(agreement[POSITIONS : POSITIONS + 4])
    assert easy[0] > 0.95 and hard[1] > 0.95
    assert prior.kind_weights(agreement[:4])["easy"] == pytest.approx(easy[0])


def test_weighted_rates_are_the_mixture_of_the_prompts(prior):
    """One-hot weights give the prompt's own rates; the posterior mixes the two."""
    both = expected_tree(prior.rates, "rrs", (2, 2))[0]
    alone = [
        expected_tree(prior.rates.weighted(np.repeat(np.eye(2)[j], POSITIONS)), "rrs", (2, 2))[0] for j in range(2)
    ]
    assert alone[0] > both > alone[1]
    table = PlanTable.of(prior, [Candidate("rrs", (2, 2))])
    assert table.tokens[0].tolist() == pytest.approx(alone, rel=1e-9)


def planner(prior, profile, *, every=4, max_new_tokens=64, adapt=True, min_evidence=8) -> OnlinePlanner:
    table = PlanTable.of(prior, candidates_for("auto", None, max_nodes=8))
    return OnlinePlanner(
        profile, prior, table, None, max_new_tokens, every=every, adapt=adapt, min_evidence=min_evidence
    )


def test_plain_decoding_wins_where_no_tree_can_pay(prior):
    """Draft forwards as dear as the target's: every tree loses, and the planner decodes plainly."""
    choice = planner(prior, linear_profile(0.0, 0.1)).choose(10, 64)
    assert choice.candidate == Candidate(None, None) and choice.tokens_per_step == 1.0


def test_a_cheap_agreeing_draft_is_used_and_evidence_of_disagreement_turns_it_off(prior):
    online = planner(prior, linear_profile(0.001, 0.001))
    online.observed = list(prior.agreement[:6])  # the prompt looks like the easy one
    assert online.choose(10, 64).candidate.scheme is not None
    online.observed = list(prior.agreement[POSITIONS : POSITIONS + 6])  # like the hard one
    choice = online.choose(10, 64)
    assert choice.candidate.scheme is None or choice.tokens_per_step < 1.3


def test_the_first_tokens_keep_the_target_law_with_adaptation_on(pair, one_thread, prior):
    """Re-planning at every step, between plain decoding and trees, from what earlier steps saw."""
    target, draft = pair
    prompt = torch.tensor([3, 1, 4])
    law = sequence_law(target, prompt, 3, temperature=1.0)
    runners = TorchRunner(target), TorchRunner(draft)
    generator = torch.Generator().manual_seed(5)
    profile = linear_profile(0.02, 0.005)  # near the boundary: the evidence decides
    samples, kinds = [], set()
    for _ in range(800):
        online = planner(prior, profile, every=1, max_new_tokens=3, min_evidence=1)
        online.generator = generator
        result = run(
            *runners,
            prompt,
            frozenset(),
            online,
            verifiers.get("token"),
            generator,
            temperature=1.0,
            top_k=None,
            top_p=None,
            max_new_tokens=3,
            label=("auto", "auto"),
            depth=3,
        )
        samples.append(result.tokens)
        kinds |= {bool(name) for name in result.plans}
    assert kinds == {True, False}, "the test should see both plain and speculative steps"
    assert_law(samples, law)
