"""Predicted against measured tokens/s for every configuration of a ``bench generate`` run.

For each (temperature, configuration) the cost model
(:func:`multidraft.planning.cost.predict_generation`) predicts each prompt's
seconds from its prompt length and the run's ``new_tokens``, with the
acceptance by rank measured at that temperature; the predicted tokens/s is
the total tokens over the total predicted seconds, set beside the measured
one.  A second prediction keeps the cost model but uses the measured
tokens per step, which separates the error of the time model from that of
the acceptance model.  Hugging Face assisted generation runs another code
path and is not predicted.

Absolute tokens/s follow the machine's state when it was profiled; on a
shared machine that drifts (its read bandwidth moved between 33 and 80 GB/s
within an hour here).  So each row also sets the predicted speedup over
autoregressive sampling (both predicted from the same profile) beside the
measured one (both measured in the same interleaved run): a drift that
slows every forward alike cancels in both.
"""

from __future__ import annotations

from collections.abc import Sequence

from multidraft.bench.generate import AUTOREGRESSIVE, HF_ASSISTED
from multidraft.planning.acceptance import RankRates
from multidraft.planning.cost import generation_seconds, predict_generation
from multidraft.planning.profile import Profile
from multidraft.shapes import parse_shape


def prediction_rows(
    records: Sequence[dict], profile: Profile, rates: dict[float, RankRates], new_tokens: int
) -> list[dict]:
    groups: dict[tuple[float, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["temperature"], record["config"]), []).append(record)
    rows = []
    for (temperature, label), runs in sorted(groups.items()):
        parts = label.split(" ")
        if parts[0].startswith(HF_ASSISTED):
            continue
        scheme, shape = (None, None) if parts[0] == AUTOREGRESSIVE else (parts[0], parse_shape(parts[1]))
        tokens = sum(len(r["tokens"]) for r in runs)
        measured = sum(r["seconds"] for r in runs)
        predicted = with_measured_steps = 0.0
        for run in runs:
            whole = predict_generation(profile, rates.get(temperature), scheme, shape, run["prompt_tokens"], new_tokens)
            predicted += whole["seconds"]
            prefill = whole["seconds"] - new_tokens / whole["tokens_per_step"] * whole["step_seconds"]
            measured_per_step = (sum(a + 1 for a in run["accepted_lengths"]) / run["target_calls"]) if scheme else 1.0
            with_measured_steps += generation_seconds(whole["step_seconds"], measured_per_step, prefill, new_tokens)
        rows.append(
            {
                "temperature": temperature,
                "config": label,
                "prompts": len(runs),
                "measured_tokens_per_second": tokens / measured,
                "predicted_tokens_per_second": tokens / predicted,
                "ratio": predicted / measured,  # measured tokens/s over predicted tokens/s
                "predicted_with_measured_steps": tokens / with_measured_steps,
                "ratio_with_measured_steps": with_measured_steps / measured,
            }
        )
    baselines = {row["temperature"]: row for row in rows if row["config"] == AUTOREGRESSIVE}
    for row in rows:
        base = baselines.get(row["temperature"])
        if base is not None:
            row["measured_speedup"] = row["measured_tokens_per_second"] / base["measured_tokens_per_second"]
            row["predicted_speedup"] = row["predicted_tokens_per_second"] / base["predicted_tokens_per_second"]
            row["speedup_ratio"] = row["measured_speedup"] / row["predicted_speedup"]
    return rows
