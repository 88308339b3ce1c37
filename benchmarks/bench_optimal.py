"""Time ``optimal_acceptance`` for the i.i.d. and without-replacement draft laws.

p, q = softmax of Gaussian logits (scale 3, fixed seed) at V = 32,000 and
128,000; k = 2, 4, 8; best of 3 runs.  Also records two accuracy checks of
the exponential-race integral at scale: for ``wor`` at the largest V and k the
value recomputed with half the quadrature step, and for k = 2 the largest gap
over all prefixes between the integral and the closed form.  Writes
``benchmarks/results/optimal_acceptance.json`` and prints a table.

    python benchmarks/bench_optimal.py
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from multidraft.theory import optimal
from multidraft.theory.optimal import optimal_acceptance

VOCABS = (32_000, 128_000)
KS = (2, 4, 8)
LAWS = ("iid", "wor")
REPEATS = 3
LOGIT_SCALE = 3.0
SEED = 0
RESULTS = Path(__file__).parent / "results" / "optimal_acceptance.json"


def softmax_pair(vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(p, q): two softmaxes of independent N(0, LOGIT_SCALE^2) logits."""
    logits = LOGIT_SCALE * rng.standard_normal((2, vocab))
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    p, q = weights / weights.sum(axis=1, keepdims=True)
    return p, q


def best_time(law: str, p: np.ndarray, q: np.ndarray, k: int) -> tuple[float, float]:
    """(best wall time of REPEATS runs in seconds, alpha*)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        value = optimal_acceptance(law, p, q, k)
        times.append(time.perf_counter() - start)
    return min(times), value


def half_step_check(p: np.ndarray, q: np.ndarray, k: int) -> dict:
    """alpha*(wor) with the default quadrature step and with half of it."""
    default = optimal_acceptance("wor", p, q, k)
    saved = optimal._STEP_SMALL_K, optimal._STEP_SCALE
    optimal._STEP_SMALL_K, optimal._STEP_SCALE = saved[0] / 2, saved[1] / 2
    try:
        fine = optimal_acceptance("wor", p, q, k)
    finally:
        optimal._STEP_SMALL_K, optimal._STEP_SCALE = saved
    return {"V": p.size, "k": k, "alpha": default, "alpha_half_step": fine, "abs_difference": abs(default - fine)}


def closed_form_check(p: np.ndarray, q: np.ndarray) -> dict:
    """For k = 2, the largest gap over all prefixes between the closed form and the race integral."""
    q_sorted, _, complement_q = optimal._prefix_masses(p, q)
    gap = np.abs(optimal._wor_pair_miss(q_sorted, complement_q) - optimal._wor_miss(q_sorted, complement_q, 2))
    return {"V": p.size, "k": 2, "max_abs_difference_over_prefixes": float(gap.max())}


def main() -> None:
    rng = np.random.default_rng(SEED)
    pairs = {vocab: softmax_pair(vocab, rng) for vocab in VOCABS}
    rows = []
    for vocab, (p, q) in pairs.items():
        for k in KS:
            for law in LAWS:
                seconds, value = best_time(law, p, q, k)
                rows.append({"law": law, "V": vocab, "k": k, "seconds": seconds, "alpha": value})
    check = half_step_check(*pairs[max(VOCABS)], max(KS))
    pair_check = closed_form_check(*pairs[max(VOCABS)])
    report = {
        "what": "optimal_acceptance(law, p, q, k): best of 3 wall-clock seconds",
        "inputs": f"p, q = softmax({LOGIT_SCALE} * N(0, 1) logits), numpy seed {SEED}",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "results": rows,
        "wor_quadrature_self_consistency": check,
        "wor_k2_closed_form_vs_quadrature": pair_check,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'law':<5} {'V':>8} {'k':>3} {'seconds':>9} {'alpha*':>12}")
    for row in rows:
        print(f"{row['law']:<5} {row['V']:>8} {row['k']:>3} {row['seconds']:>9.4f} {row['alpha']:>12.9f}")
    print(f"wor V={check['V']} k={check['k']}: |alpha(h) - alpha(h/2)| = {check['abs_difference']:.2e}")
    print(
        f"wor V={pair_check['V']} k=2: max |closed form - integral| = "
        f"{pair_check['max_abs_difference_over_prefixes']:.2e}"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
