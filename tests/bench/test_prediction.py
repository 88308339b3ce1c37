"""Predicted against measured tokens/s and speedups of a `bench generate` run."""

from __future__ import annotations

import pytest

from multidraft.bench.prediction import prediction_rows
from multidraft.planning.cost import predict_generation
from multidraft.tree import parse_shape
from tests.support.planning import flat_rates, linear_profile


def run_record(config: str, seconds: float, tokens: int, calls: int, accepted: list[int]) -> dict:
    return {"temperature": 1.0, "config": config, "prompt": 0, "prompt_tokens": 20, "tokens": [0] * tokens,
            "seconds": seconds, "target_calls": calls, "accepted_lengths": accepted}


def test_predicted_speedups_cancel_a_machine_that_runs_uniformly_slower():
    profile, rates = linear_profile(0.01, 0.02), flat_rates(0.6)
    ar = predict_generation(profile, None, None, None, 20, 32)["seconds"]
    chain = predict_generation(profile, rates, "sps", parse_shape("1x3"), 20, 32)
    slow = 1.7  # the run met a machine 1.7x slower than the profiled one, for every forward alike
    steps = round(32 / chain["tokens_per_step"])
    records = [run_record("autoregressive", slow * ar, 32, 32, [0] * 32),
               run_record("sps 1x3", slow * chain["seconds"], 32, steps, [1] * steps)]
    rows = {row["config"]: row for row in prediction_rows(records, profile, {1.0: rates}, 32)}
    assert rows["autoregressive"]["ratio"] == pytest.approx(1 / slow)  # absolute tokens/s: off by the drift
    assert rows["sps 1x3"]["ratio"] == pytest.approx(1 / slow)
    assert rows["sps 1x3"]["speedup_ratio"] == pytest.approx(1.0)  # speedups: the drift cancels
    assert rows["sps 1x3"]["predicted_speedup"] == pytest.approx(ar / chain["seconds"])
    assert rows["autoregressive"]["measured_speedup"] == 1.0
