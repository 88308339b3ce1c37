"""The engines' top-k baseline: deterministic drafts, target-only verification, alpha = p(top-k set)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multidraft import schemes, theory
from multidraft.schemes import topk


def test_drafts_are_the_top_k_of_q_with_ties_by_index_and_padding():
    q = torch.tensor([[0.1, 0.3, 0.3, 0.2, 0.1]])
    scheme = schemes.get("topk")
    assert scheme.sample_drafts(q, 3).tolist() == [[1, 2, 3]]
    assert scheme.sample_drafts(q, 7).tolist() == [[1, 2, 3, 0, 4, 1, 1]]


def test_acceptance_is_the_target_mass_of_the_top_k_set():
    p, q = np.array([0.5, 0.1, 0.3, 0.1]), np.array([0.1, 0.4, 0.3, 0.2])
    assert theory.acceptance("topk", p, q, 2) == pytest.approx(0.4, abs=1e-15)
    assert theory.optimal_acceptance("topk", p, q, 2) == pytest.approx(0.4, abs=1e-15)
    assert theory.acceptance("topk", p, q, 9) == pytest.approx(1.0, abs=1e-15)


def test_a_zero_probability_draft_is_never_accepted_even_with_a_coin_of_exactly_zero(monkeypatch):
    monkeypatch.setattr(topk, "uniform", lambda shape, like, generator: torch.zeros(shape, dtype=like.dtype))
    p = torch.tensor([[0.0, 0.0, 0.6, 0.4]])
    q = torch.tensor([[0.7, 0.2, 0.1, 0.0]])  # drafts 0 and 1 have p = 0
    token, accepted = schemes.get("topk").verify(p, q, schemes.get("topk").sample_drafts(q, 2))
    assert not bool(accepted) and int(token) in (2, 3)
    token, accepted = schemes.get("topk").verify(p, q, torch.tensor([[0, 2]]))
    assert bool(accepted) and int(token) == 2


def test_topk_is_in_the_theory_table_and_the_token_benchmark(capsys):
    from multidraft.bench.recording import Recording
    from multidraft.bench.tokens import token_table
    from multidraft.cli import main

    assert main(["theory", "--k", "2", "--p", "0.5,0.3,0.2", "--q", "0.2,0.3,0.5"]) == 0
    out = capsys.readouterr().out
    assert "\ntopk " in out and f"{0.5:.6f}" in out and "topk draft laws" in out  # p({x_2, x_1}) = 0.3 + 0.2
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.full(12, 0.3), size=4), rng.dirichlet(np.full(12, 0.3), size=4)
    recording = Recording(
        header={"temperature": 1.0},
        token_ids=np.tile(np.arange(11), (4, 1)),
        p=p[:, :-1],
        q=q[:, :-1],
        p_tail=p[:, -1],
        q_tail=q[:, -1],
        prompt_index=np.zeros(4, dtype=np.int64),
    )
    rows = {(r["scheme"], r["k"]): r for r in token_table(recording, [2], names=["sps", "topk"])}
    assert ("topk", 1) in rows and ("topk", 2) in rows
    expected = np.mean([theory.acceptance("topk", *recording.pair(i), 2) for i in range(len(recording))])
    assert rows[("topk", 2)]["acceptance"] == pytest.approx(expected, abs=1e-12)
    assert rows[("topk", 2)]["gap_to_own_optimum"] == pytest.approx(0, abs=1e-12)
