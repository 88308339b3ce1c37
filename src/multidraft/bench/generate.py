"""End-to-end benchmark (``multidraft bench generate``): block efficiency, tokens/s and speedup, resumable.

For every temperature and prompt, each configuration generates
``new_tokens`` tokens from the same prompt with the same seed, back to back
(**interleaved**: the configurations of a prompt run one after the other, in
an order rotated from prompt to prompt, so load changes hit all of them
alike).  Every model path is warmed up before anything is timed.

Configurations (:func:`parse_configs`): ``autoregressive`` (plain sampling
of the target on the same fast path), ``scheme:tree[:verifier]`` (multidraft),
and ``hf:γ`` (Hugging Face assisted generation with ``γ`` assistant tokens,
on separately loaded models, as a Hugging Face user would run it).  The
multidraft configurations run on the pair's engine (``--engine``: PyTorch, or
llama.cpp running the GGUF files as they are); two peers of plain sampling
run beside them on their own: ``llama-plain``, llama-cpp-python's high-level
``Llama`` sampling the target GGUF as its users run it, and ``torch-plain``,
multidraft's ``autoregressive`` on the float32 PyTorch target (a GGUF
de-quantised).  Every row is timed the same way: from the call with the
prompt (whose processing is included) to the last of its ``new_tokens``
tokens.

Each (temperature, configuration, prompt) is one record of a
:class:`~multidraft.bench.store.ResultStore`, appended as soon as it is
done, so ``--resume`` continues a killed run and ends with exactly the rows
of an uninterrupted one (every run is seeded by its prompt index alone).

Reported per configuration (:func:`summarise`): tokens/s and the speedup
over autoregressive (paired over prompts); block efficiency as realised
(mean of a + 1 over steps, a = accepted drafts) and Rao-Blackwellised (mean
over steps of the exact expected tokens given the drafted tree and p, q at
its nodes: the same mean, far less variance), each with a 95% bootstrap
interval over prompts (steps clustered by prompt; none below 8 prompts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from multidraft import schemes, verifiers
from multidraft.api import generate
from multidraft.bench.hf_assisted import peer_record
from multidraft.bench.stats import paired_ratio_difference, paired_ratio_quotient, ratio_interval
from multidraft.decoding import GenerationResult, autoregressive
from multidraft.shapes import check_shape, format_shape, parse_shape
from multidraft.step import check_stop

AUTOREGRESSIVE = "autoregressive"
AUTO = "auto"
AUTO_STATIC = "auto-static"
HF_ASSISTED = "hf"
HF_SAME = "hf-same"
PEERS = (HF_ASSISTED, HF_SAME)
#: A peer's option: Hugging Face's prompt lookup (drafts copied from the text) in place of the draft model,
#: with the number of copied drafts its documentation uses.
HF_LOOKUP = "lookup"
HF_LOOKUP_TOKENS = 10
#: Plain sampling of the target by llama-cpp-python's ``Llama``, and by multidraft on the float32 PyTorch target.
LLAMA_PLAIN = "llama-plain"
TORCH_PLAIN = "torch-plain"
PLAIN_PEERS = (LLAMA_PLAIN, TORCH_PLAIN)
#: The ``peers`` entry of torch's threads for ``torch-plain`` (None: as they are).
TORCH_THREADS = "torch-plain threads"


@dataclass(frozen=True)
class Config:
    """One configuration: ``scheme`` is a scheme name, ``autoregressive``, ``auto`` (then ``tree`` is the
    slow-down of the profile it plans with, "" for none, and ``adapt`` whether it re-plans online) or a
    Hugging Face peer (then ``tree`` is γ or ``default``)."""

    scheme: str
    tree: str = ""
    verifier: str = "token"
    adapt: bool = True
    min_probability: float = 0.0  # a fixed configuration's confidence stop (``scheme:tree@τ``)

    @property
    def label(self) -> str:
        if self.scheme in (AUTOREGRESSIVE, *PLAIN_PEERS):
            return self.scheme
        if self.scheme == AUTO:
            name = AUTO if self.adapt else AUTO_STATIC
            return name if not self.tree else f"{name} (profile {self.tree}x slower)"
        if self.scheme in PEERS:
            where = " (same models)" if self.scheme == HF_SAME else ""
            if self.tree == HF_LOOKUP:
                return f"hf prompt lookup{where} γ={HF_LOOKUP_TOKENS}"
            return f"hf-assisted{where} " + ("default" if self.tree == "default" else f"γ={self.tree}")
        stop = f"@{self.min_probability:g}" if self.min_probability else ""
        return f"{self.scheme} {self.tree}{stop}" + ("" if self.verifier == "token" else f" {self.verifier}")

    @property
    def speculative(self) -> bool:
        return self.scheme not in (AUTOREGRESSIVE, *PEERS, *PLAIN_PEERS)


def parse_config(item: str) -> Config:
    """``autoregressive``, ``auto[:slow-down]``, ``auto-static[:slow-down]`` (the planner's first plan kept for
    the whole generation: no online adaptation), ``hf:γ``, ``hf:default``, ``hf-same:γ|default|lookup``,
    ``llama-plain``, ``torch-plain`` or ``scheme:tree[:verifier]``, checked before any model is loaded.
    ``scheme:tree@τ`` stops each tree where the draft's probability of every new token falls below τ.

    ``hf`` runs Hugging Face assisted generation on separately loaded models, as its users load them;
    ``hf-same`` on the models multidraft runs (prepared for the fast path); ``default`` leaves its
    assistant settings at Hugging Face's defaults (an adaptive number of drafts); ``lookup`` runs its prompt
    lookup, :data:`HF_LOOKUP_TOKENS` drafts copied from the text per call, with no draft model.
    """
    parts = [part.strip() for part in item.split("@", 1)[0].split(":")]
    if parts[0] in (AUTOREGRESSIVE, *PLAIN_PEERS):
        if len(parts) != 1:
            raise ValueError(f"{parts[0]} takes no options, got {item!r}")
        return Config(parts[0])
    if parts[0] in (AUTO, AUTO_STATIC):
        if len(parts) > 2 or (len(parts) == 2 and not _positive(parts[1])):
            raise ValueError(
                f"{parts[0]} takes an optional profile slow-down factor > 0 (e.g. {parts[0]}:2.5), got {item!r}"
            )
        return Config(AUTO, parts[1] if len(parts) == 2 else "", adapt=parts[0] == AUTO)
    if parts[0] in PEERS:
        if len(parts) != 2 or not (parts[1] in ("default", HF_LOOKUP) or (parts[1].isdigit() and int(parts[1]) >= 1)):
            raise ValueError(
                f"Hugging Face assisted generation is {parts[0]}:γ (γ >= 1 assistant tokens), "
                f"{parts[0]}:default or {parts[0]}:{HF_LOOKUP}, got {item!r}"
            )
        return Config(parts[0], parts[1])
    if len(parts) not in (2, 3):
        raise ValueError(
            f"a configuration is scheme:tree[:verifier] (e.g. spechub:2x3), hf:γ or autoregressive, got {item!r}"
        )
    scheme, shape = schemes.get(parts[0]), parse_shape(parts[1])
    check_shape(shape, scheme)
    verifier = parts[2] if len(parts) == 3 else "token"
    verifiers.get(verifier).check(shape, scheme)
    tau = _stop(item) if "@" in item else 0.0
    check_stop(tau, verifier)
    return Config(parts[0], format_shape(shape), verifier, min_probability=tau)


def _stop(item: str) -> float:
    """τ of ``scheme:tree@τ``."""
    try:
        return float(item.rsplit("@", 1)[1])
    except ValueError:
        raise ValueError(
            f"a confidence stop is scheme:tree@τ with 0 < τ < 1 (e.g. sps:1x8@0.4), got {item!r}"
        ) from None


def check_engine(configs: Sequence[Config], engine: str, target_gguf: bool, llama_installed: bool) -> None:
    """Refuse, before any model is loaded, configurations the engine or the target cannot run: ``llama-plain``
    needs llama-cpp-python and a GGUF target; ``hf-same`` runs the PyTorch models multidraft runs (torch only)."""
    schemes_asked = {config.scheme for config in configs}
    if LLAMA_PLAIN in schemes_asked and not target_gguf:
        raise ValueError(f"{LLAMA_PLAIN} runs the target's .gguf file; the target is a Hugging Face folder")
    if LLAMA_PLAIN in schemes_asked and not llama_installed:
        from multidraft.runners.llama import INSTALL_HINT

        raise ValueError(f"{LLAMA_PLAIN}: {INSTALL_HINT}")
    if HF_SAME in schemes_asked and engine != "torch":
        raise ValueError(f"{HF_SAME} runs the PyTorch models multidraft runs: it needs --engine torch")


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def parse_configs(text: str) -> list[Config]:
    """A comma-free list is not possible for templates ("3/2,1"), so configurations are separated by spaces or ';'."""
    items = [item for chunk in text.replace(";", " ").split() for item in [chunk.strip()] if item]
    if not items:
        raise ValueError("no configuration given")
    configs = [parse_config(item) for item in items]
    labels = [config.label for config in configs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"configurations repeat: {' '.join(labels)}")
    return configs


def default_configs(full: bool) -> list[Config]:
    """The grid: binary trees for the multi-draft schemes, chains for sps, wide trees for k > 2."""
    depths = (2, 3, 4, 5) if full else (2, 3)
    configs = [Config(AUTOREGRESSIVE)] + [Config("sps", f"1x{d + 1}") for d in depths]
    for name in ("rrs", "rrs-wor", "kseq", "spechub", "greedy", "topk") if full else ("rrs", "rrs-wor", "spechub"):
        configs += [Config(name, f"2x{d}") for d in depths]
    if full:
        for name in ("rrs", "rrs-wor", "kseq", "greedy", "topk"):
            configs += [Config(name, "3x3"), Config(name, "4x2")]
    return configs


# -- running ----------------------------------------------------------------------------------------


def record_of(result: GenerationResult) -> dict:
    """What a run stores: tokens, per-step counts and expectations, seconds per phase."""
    return {
        "tokens": result.tokens,
        "accepted_lengths": result.accepted_lengths,
        "expected_tokens": result.expected_tokens,
        "tree_sizes": result.tree_sizes,
        "target_calls": result.target_calls,
        "draft_calls": result.draft_calls,
        "seconds": result.total_seconds,
        "draft_seconds": result.draft_seconds,
        "target_seconds": result.target_seconds,
        "verification_seconds": result.verification_seconds,
        "plans": result.plans,
        "predicted_tokens": result.predicted_tokens,
        "step_seconds": result.step_seconds,
    }


def run_one(
    pair,
    config: Config,
    prompt: torch.Tensor,
    *,
    temperature: float,
    new_tokens: int,
    seed: int,
    top_k=None,
    top_p=None,
    hf_pair=None,
    peers: dict | None = None,
) -> dict:
    """One generation of ``config`` from ``prompt``; EOS is not a stop (every run has ``new_tokens`` tokens).

    ``peers``: what the plain peers run on, ``{"llama-plain": a llama_cpp.Llama of the target GGUF,
    "torch-plain": the float32 PyTorch target, "torch-plain threads": torch's threads while it runs}``, for the
    ones asked for."""
    options = dict(max_new_tokens=new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    generator = torch.Generator(device=pair.target.device).manual_seed(seed)
    if config.scheme == AUTOREGRESSIVE:
        return record_of(autoregressive(pair.target, prompt, generator=generator, **options))
    if config.scheme == TORCH_PLAIN:
        target, threads = peers[TORCH_PLAIN], peers.get(TORCH_THREADS)
        generator = torch.Generator(device=target.device).manual_seed(seed)
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)  # its forwards get the cores (outside the timed part)
        try:
            return record_of(autoregressive(target, prompt.to(target.device), generator=generator, **options))
        finally:
            torch.set_num_threads(before)
    if config.scheme == LLAMA_PLAIN:
        return llama_plain(peers[LLAMA_PLAIN], prompt, seed=seed, **options)
    if config.scheme in PEERS:
        from multidraft.bench.hf_assisted import HFPair, assisted_generate

        models = hf_pair if config.scheme == HF_ASSISTED else HFPair(pair.target, pair.draft)
        if config.tree == HF_LOOKUP:
            return assisted_generate(
                models, prompt, assistant_tokens=None, lookup_tokens=HF_LOOKUP_TOKENS, seed=seed, **options
            )
        tokens = None if config.tree == "default" else int(config.tree)
        return assisted_generate(models, prompt, assistant_tokens=tokens, seed=seed, **options)
    if config.scheme == AUTO:
        profile = None
        if config.tree:
            from multidraft import planning

            profile = planning.cached_profile(pair.target, pair.draft).slowed(float(config.tree))
        return record_of(
            generate(
                pair.target,
                pair.draft,
                prompt,
                scheme="auto",
                tree="auto",
                generator=generator,
                exact_expectation=True,
                adapt=config.adapt,
                profile=profile,
                **options,
            )
        )
    result = generate(
        pair.target,
        pair.draft,
        prompt,
        scheme=config.scheme,
        tree=config.tree,
        verifier=config.verifier,
        min_draft_probability=config.min_probability,
        generator=generator,
        exact_expectation=True,
        **options,
    )
    return record_of(result)


def llama_plain(llm, prompt: torch.Tensor, *, max_new_tokens: int, temperature: float, top_k, top_p, seed: int) -> dict:
    """Plain sampling of ``max_new_tokens`` tokens by llama-cpp-python's ``Llama.generate`` as its users run it
    (its sampler chain with nothing else on: no min-p, no repetition penalty; top-k and top-p, when given, apply
    before the temperature in llama.cpp's chain).  The prompt is processed anew every time (no reuse of the
    previous run's cache), as multidraft's rows process theirs."""
    llm.reset()
    llm.set_seed(seed)
    tokens = []
    start = time.perf_counter()
    for token in llm.generate(
        prompt.tolist(),
        top_k=top_k or 0,
        top_p=1.0 if top_p is None else top_p,
        min_p=0.0,
        typical_p=1.0,
        temp=temperature,
        repeat_penalty=1.0,
        reset=True,
    ):
        tokens.append(int(token))
        if len(tokens) == max_new_tokens:
            break
    seconds = time.perf_counter() - start
    return peer_record(tokens, len(tokens), seconds)


def warm_up(pair, configs: Sequence[Config], prompt: torch.Tensor, hf_pair=None, peers: dict | None = None) -> float:
    """Run every configuration once for a few tokens, so that first-call costs stay out of the timings."""
    start = time.perf_counter()
    for config in configs:
        run_one(pair, config, prompt[:16], temperature=1.0, new_tokens=4, seed=0, hf_pair=hf_pair, peers=peers)
    return time.perf_counter() - start


def run(
    pair,
    prompts: Sequence[torch.Tensor],
    store,
    *,
    configs: Sequence[Config],
    temperatures: Sequence[float],
    new_tokens: int,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    hf_pair=None,
    peers: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Append to ``store`` a record per (temperature, configuration, prompt) it does not hold yet.

    The configurations of one prompt run back to back; their order rotates
    with the prompt index.  Prompt i is seeded ``seed + i`` for every
    configuration.
    """
    for temperature in temperatures:
        for index, prompt in enumerate(prompts):
            shift = index % len(configs)
            for config in list(configs[shift:]) + list(configs[:shift]):
                key = (temperature, config.label, index)
                if not store.done(key):
                    record = run_one(
                        pair,
                        config,
                        prompt,
                        temperature=temperature,
                        new_tokens=new_tokens,
                        seed=seed + index,
                        top_k=top_k,
                        top_p=top_p,
                        hf_pair=hf_pair,
                        peers=peers,
                    )
                    store.append(
                        {
                            "temperature": temperature,
                            "config": config.label,
                            "prompt": index,
                            "prompt_tokens": int(prompt.numel()),
                            **record,
                        }
                    )
                if progress is not None:
                    progress(f"T={temperature} {config.label}")


# -- summaries --------------------------------------------------------------------------------------


def _by_config(records: Sequence[dict]) -> dict[tuple[float, str], dict[int, dict]]:
    table: dict[tuple[float, str], dict[int, dict]] = {}
    for record in records:
        table.setdefault((record["temperature"], record["config"]), {})[record["prompt"]] = record
    return table


def per_prompt(runs: dict[int, dict], prompts: Sequence[int]) -> dict[str, list[float]]:
    """Per-prompt sums: tokens, seconds, steps, realised and expected tokens of the steps."""
    chosen = [runs[i] for i in prompts]
    return {
        "tokens": [len(r["tokens"]) for r in chosen],
        "seconds": [r["seconds"] for r in chosen],
        "steps": [r["target_calls"] for r in chosen],
        # a + 1 tokens per step before the cut at new_tokens; the tokens themselves where steps are not seen (HF)
        "realised": [
            sum(a + 1 for a in r["accepted_lengths"]) if r["accepted_lengths"] else len(r["tokens"]) for r in chosen
        ],
        "expected": [sum(r["expected_tokens"]) if r.get("expected_tokens") else float("nan") for r in chosen],
    }


def summarise(records: Sequence[dict], seed: int = 0) -> list[dict]:
    """One row per (temperature, configuration) over the prompts every configuration of that temperature finished."""
    table = _by_config(records)
    rows = []
    for temperature in sorted({t for t, _ in table}):
        labels = [label for t, label in table if t == temperature]
        common = sorted(set.intersection(*(set(table[(temperature, label)]) for label in labels)))
        if not common:
            continue
        base = per_prompt(table[(temperature, AUTOREGRESSIVE)], common) if AUTOREGRESSIVE in labels else None
        for label in labels:
            runs = table[(temperature, label)]
            sums = per_prompt(runs, common)
            row = {
                "temperature": temperature,
                "config": label,
                "prompts": len(common),
                "tokens": sum(sums["tokens"]),
                "tokens_per_second": sum(sums["tokens"]) / sum(sums["seconds"]),
                "tokens_per_second_ci95": ratio_interval(sums["tokens"], sums["seconds"], seed),
                "target_calls": sum(sums["steps"]),
                "block_efficiency": sum(sums["realised"]) / sum(sums["steps"]),
                "block_efficiency_ci95": ratio_interval(sums["realised"], sums["steps"], seed),
            }
            if all(runs[i].get("expected_tokens") for i in common):
                row["expected_block_efficiency"] = sum(sums["expected"]) / sum(sums["steps"])
                row["expected_block_efficiency_ci95"] = ratio_interval(sums["expected"], sums["steps"], seed)
            if base is not None:
                speedup, interval = paired_ratio_quotient(
                    (sums["tokens"], sums["seconds"]), (base["tokens"], base["seconds"]), seed
                )
                row["speedup"], row["speedup_ci95"] = speedup, interval
            phases = {
                name: sum(runs[i][f"{name}_seconds"] for i in common) for name in ("draft", "target", "verification")
            }
            total = sum(sums["seconds"])
            row.update({f"{name}_share": value / total for name, value in phases.items()})
            rows.append(row)
    return rows


def differences(records: Sequence[dict], pairs: Sequence[tuple[str, str]], seed: int = 0) -> list[dict]:
    """Paired differences of (Rao-Blackwellised and realised) block efficiency, config a minus config b."""
    table = _by_config(records)
    out = []
    for temperature in sorted({t for t, _ in table}):
        for a, b in pairs:
            if (temperature, a) not in table or (temperature, b) not in table:
                continue
            common = sorted(set(table[(temperature, a)]) & set(table[(temperature, b)]))
            if not common:
                continue
            sa, sb = per_prompt(table[(temperature, a)], common), per_prompt(table[(temperature, b)], common)
            expected, expected_ci = paired_ratio_difference(
                (sa["expected"], sa["steps"]), (sb["expected"], sb["steps"]), seed
            )
            realised, realised_ci = paired_ratio_difference(
                (sa["realised"], sa["steps"]), (sb["realised"], sb["steps"]), seed
            )
            out.append(
                {
                    "temperature": temperature,
                    "comparison": f"{a} - {b}",
                    "prompts": len(common),
                    "delta_expected": expected,
                    "delta_expected_ci95": expected_ci,
                    "delta_realised": realised,
                    "delta_realised_ci95": realised_ci,
                }
            )
    return out
