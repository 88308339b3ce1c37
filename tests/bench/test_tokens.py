"""The token-level benchmark table: exact rates, bounds and the Monte-Carlo fallback."""

from __future__ import annotations

import numpy as np
import pytest

from multidraft.bench.recording import Recording
from multidraft.bench.tokens import token_table
from multidraft.theory import acceptance, acceptance_mc, optimal_acceptance


def synthetic_recording(positions: int = 12, vocab: int = 40, seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(vocab, 0.3), size=positions)
    q = 0.7 * p + 0.3 * rng.dirichlet(np.full(vocab, 0.3), size=positions)
    return Recording(
        header={"temperature": 1.0},
        token_ids=np.tile(np.arange(vocab - 1), (positions, 1)),
        p=p[:, :-1],
        q=q[:, :-1],
        p_tail=p[:, -1],
        q_tail=q[:, -1],
        prompt_index=np.zeros(positions, dtype=np.int64),
    )


def test_token_table_rows_are_the_exact_means():
    recording = synthetic_recording()
    rows = {(r["scheme"], r["k"]): r for r in token_table(recording, [2, 3])}
    assert ("sps", 1) in rows and ("spechub", 2) in rows and ("spechub", 3) not in rows
    row = rows[("kseq", 3)]
    expected = np.mean([acceptance("kseq", *recording.pair(i), 3) for i in range(len(recording))])
    assert row["acceptance"] == pytest.approx(expected, abs=1e-12)
    own = np.mean([optimal_acceptance("iid", *recording.pair(i), 3) for i in range(len(recording))])
    assert row["optimal_own_law"] == pytest.approx(own, abs=1e-12)
    for r in rows.values():
        assert r["acceptance"] <= r["optimal_own_law"] + 3 * r["acceptance_se"] + 1e-12
        assert r["optimal_own_law"] <= r["best_optimal"] + 1e-12
    assert rows[("greedy", 2)]["gap_to_own_optimum"] == pytest.approx(0, abs=1e-12)


def test_monte_carlo_rows_agree_with_exact_rates():
    recording = synthetic_recording(positions=6, vocab=12)
    row = next(r for r in token_table(recording, [3], names=["rrs-wor"], mc_draws=4000) if r["k"] == 3)
    assert row["method"].startswith("monte-carlo")
    exact = np.mean([acceptance("rrs-wor", *recording.pair(i), 3) for i in range(len(recording))])
    assert abs(row["acceptance"] - exact) < 4 * 0.5 / np.sqrt(6 * 4000)


def test_acceptance_mc_brackets_the_exact_rate():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    mean, error = acceptance_mc("spechub", p, q, 2, n=20000, seed=3)
    assert abs(mean - acceptance("spechub", p, q, 2)) < 4 * error
    with pytest.raises(ValueError, match="n must be"):
        acceptance_mc("rrs", p, q, 2, n=1)
