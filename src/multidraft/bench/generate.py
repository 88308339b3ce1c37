"""End-to-end benchmark (``multidraft bench generate``): block efficiency, tokens/s, speedup.

For every temperature, the plain autoregressive baseline and each
(scheme, tree shape) configuration generate ``new_tokens`` tokens from the
same prompts, in one run, with fixed seeds.  Reported per configuration:

* block efficiency = tokens emitted / target calls (the papers' tokens per
  step), pooled over prompts, with a 95% bootstrap interval over prompts;
* tokens/s, and speedup = (baseline seconds per token) / (seconds per token);
* the share of each step's wall-clock time spent in verification (the walk
  and cutting the caches back), drafting and the target.

The configurations follow SpecHub's experiments: binary trees of depth 2-5
(``2x2`` .. ``2x5``) for the multi-draft schemes, ``1xL`` chains for
single-draft sampling, and wider trees (``3x..``, ``4x..``) for schemes that
take k > 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from multidraft import schemes
from multidraft.decoding import GenerationResult, autoregressive, generate
from multidraft.tree import format_shape, parse_shape

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Config:
    scheme: str
    tree: str

    @property
    def label(self) -> str:
        return f"{self.scheme} {self.tree}"


def default_configs(full: bool) -> list[Config]:
    """The grid: binary trees for the multi-draft schemes, chains for sps, wide trees for k > 2."""
    depths = (2, 3, 4, 5) if full else (2,)
    configs = [Config("sps", f"1x{d}") for d in depths]
    for name in ("rrs", "rrs-wor", "kseq", "spechub", "greedy") if full else ("rrs", "rrs-wor", "spechub"):
        configs += [Config(name, f"2x{d}") for d in depths]
    if full:
        for name in ("rrs", "rrs-wor", "kseq", "greedy"):
            configs += [Config(name, "3x3"), Config(name, "4x2")]
    return configs


def parse_configs(text: str) -> list[Config]:
    """``"spechub:2x3,rrs:2x3"`` -> configs, each checked (scheme known, tree fits the scheme)."""
    configs = []
    for item in text.split(","):
        if ":" not in item:
            raise ValueError(f"a configuration is scheme:tree (e.g. spechub:2x3), got {item!r}")
        name, tree = (part.strip() for part in item.split(":", 1))
        scheme = schemes.get(name)
        shape = parse_shape(tree)
        for k in set(shape):
            scheme.check_k(k)
        configs.append(Config(name, format_shape(shape)))
    return configs


def bootstrap_ratio(tokens: np.ndarray, calls: np.ndarray, seed: int) -> tuple[float, float]:
    """95% interval of sum(tokens) / sum(calls) by resampling prompts."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(tokens), size=(BOOTSTRAP_RESAMPLES, len(tokens)))
    ratios = tokens[picks].sum(1) / calls[picks].sum(1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return float(low), float(high)


def summarise(label: str, results: Sequence[GenerationResult], baseline_seconds_per_token: float | None, seed: int) -> dict:
    tokens = np.array([r.tokens_emitted for r in results], dtype=float)
    calls = np.array([r.target_calls for r in results], dtype=float)
    seconds = sum(r.total_seconds for r in results)
    parts = {name: sum(getattr(r, f"{name}_seconds") for r in results) for name in ("draft", "target", "verification")}
    low, high = bootstrap_ratio(tokens, calls, seed)
    per_token = seconds / tokens.sum()
    depth_rates = np.array([r.acceptance_per_depth for r in results], dtype=float) if results[0].acceptance_per_depth else None
    return {
        "config": label,
        "prompts": len(results),
        "tokens": int(tokens.sum()),
        "target_calls": int(calls.sum()),
        "draft_calls": int(sum(r.draft_calls for r in results)),
        "block_efficiency": float(tokens.sum() / calls.sum()),
        "block_efficiency_ci95": [low, high],
        "tokens_per_second": float(tokens.sum() / seconds),
        "speedup": (baseline_seconds_per_token / per_token) if baseline_seconds_per_token else 1.0,
        "verification_share": parts["verification"] / seconds,
        "draft_share": parts["draft"] / seconds,
        "target_share": parts["target"] / seconds,
        "acceptance_per_depth": (np.nanmean(depth_rates, axis=0).tolist() if depth_rates is not None else []),
        "per_prompt_tokens": tokens.astype(int).tolist(),
        "per_prompt_calls": calls.astype(int).tolist(),
    }


def run(
    target,
    draft,
    prompts: Sequence[torch.Tensor],
    *,
    configs: Sequence[Config],
    temperatures: Sequence[float],
    new_tokens: int,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Rows, one per (temperature, configuration), the baseline first at each temperature."""
    rows = []
    device = target.device
    for temperature in temperatures:
        def sampled(fn, label, **kwargs):
            results = []
            for index, prompt in enumerate(prompts):
                generator = torch.Generator(device=device).manual_seed(seed + index)
                results.append(fn(input_ids=prompt, max_new_tokens=new_tokens, temperature=temperature, top_k=top_k,
                                  top_p=top_p, generator=generator, eos_token_id=eos_token_id, **kwargs))
                if progress is not None:
                    progress(f"T={temperature} {label}")
            return results

        baseline = sampled(lambda **kw: autoregressive(target, **kw), "autoregressive")
        base_row = summarise("autoregressive", baseline, None, seed)
        seconds_per_token = 1 / base_row["tokens_per_second"]
        rows.append({"temperature": temperature, **base_row})
        for config in configs:
            results = sampled(
                lambda **kw: generate(target, draft, scheme=config.scheme, tree=config.tree, **kw), config.label
            )
            rows.append({"temperature": temperature, "scheme": config.scheme, "tree": config.tree,
                         **summarise(config.label, results, seconds_per_token, seed)})
    return rows


def warm_up(target, draft, prompt: torch.Tensor) -> float:
    """One short generation so that first-call costs stay out of the timings; returns its seconds."""
    start = time.perf_counter()
    generate(target, draft, prompt, scheme="rrs", tree="2x2", max_new_tokens=4, generator=torch.Generator(device=target.device))
    return time.perf_counter() - start
