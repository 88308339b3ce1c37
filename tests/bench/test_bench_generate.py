"""The end-to-end benchmark: configurations, resumable interleaved runs, summaries, intervals, paired steps."""

from __future__ import annotations

import pytest
import torch

from multidraft.bench import generate as bench
from multidraft.bench import paired
from multidraft.bench.inputs import ModelPair
from multidraft.bench.stats import MIN_PROMPTS, format_interval, paired_ratio_difference, ratio_interval
from multidraft.bench.store import ResultStore
from tests.support.models import tiny_llama


@pytest.fixture(scope="module")
def pair():
    torch.set_num_threads(1)
    return ModelPair(tiny_llama(0, layers=2), tiny_llama(1, layers=2), None, {}, (None, None))


PROMPTS = [torch.tensor([3, 1, 4]), torch.tensor([1, 5]), torch.tensor([2, 6, 5, 3])]


def test_parse_configs():
    configs = bench.parse_configs("autoregressive hf:5 spechub:2x3; rrs-wor:3/2,1,0 sps:1x4:block")
    assert [c.label for c in configs] == [
        "autoregressive",
        "hf-assisted γ=5",
        "spechub 2x3",
        "rrs-wor 3/2,1,0",
        "sps 1x4 block",
    ]
    stops = bench.parse_configs("sps:1x8@0.4 rrs:2x3@0.25")
    assert [(c.label, c.min_probability) for c in stops] == [("sps 1x8@0.4", 0.4), ("rrs 2x3@0.25", 0.25)]
    auto = bench.parse_configs("auto auto-static auto:2.5 auto-static:2.5")
    assert [(c.label, c.adapt) for c in auto] == [
        ("auto", True),
        ("auto-static", False),
        ("auto (profile 2.5x slower)", True),
        ("auto-static (profile 2.5x slower)", False),
    ]
    peers = bench.parse_configs("hf-same:default hf-same:lookup hf:lookup")
    assert [c.label for c in peers] == [
        "hf-assisted (same models) default",
        "hf prompt lookup (same models) γ=10",
        "hf prompt lookup γ=10",
    ]
    for bad, message in [
        ("hf-same:lookups", "hf-same:lookup"),
        ("spechub:3x2", "requires k = 2"),
        ("hf:0", "γ >= 1"),
        ("nope:2x2", "unknown scheme"),
        ("rrs:2x2 rrs:2x2", "repeat"),
        ("rrs", "scheme:tree"),
        ("", "no configuration"),
        ("auto-static:0", "slow-down factor > 0"),
        ("sps:1x8@x", "scheme:tree@τ"),
        ("sps:1x8@1.5", r"in \[0, 1\)"),
        ("sps:1x8:block@0.4", "only the token walk"),
    ]:
        with pytest.raises(ValueError, match=message):
            bench.parse_configs(bad)


def test_parse_the_plain_peers_and_check_them_against_the_engine():
    configs = bench.parse_configs("autoregressive auto llama-plain torch-plain topk:1x3:match rrs:2x2")
    assert [c.label for c in configs] == [
        "autoregressive",
        "auto",
        "llama-plain",
        "torch-plain",
        "topk 1x3 match",
        "rrs 2x2",
    ]
    assert [c.speculative for c in configs] == [False, True, False, False, True, True]
    for bad, message in [("llama-plain:2", "takes no options"), ("torch-plain llama-plain torch-plain", "repeat")]:
        with pytest.raises(ValueError, match=message):
            bench.parse_configs(bad)
    bench.check_engine(configs, "llama", target_gguf=True, llama_installed=True)
    bench.check_engine(bench.parse_configs("hf-same:2 torch-plain"), "torch", target_gguf=False, llama_installed=False)
    for configs, engine, gguf, installed, message in [
        ("llama-plain", "torch", False, True, "Hugging Face folder"),
        ("llama-plain", "llama", True, False, "llama-cpp-python"),
        ("hf-same:default", "llama", True, True, "--engine torch"),
    ]:
        with pytest.raises(ValueError, match=message):
            bench.check_engine(bench.parse_configs(configs), engine, gguf, installed)


def test_intervals_need_enough_prompts():
    tokens, steps = [10.0] * (MIN_PROMPTS - 1), [5.0] * (MIN_PROMPTS - 1)
    assert ratio_interval(tokens, steps) is None
    assert format_interval(None).startswith("n too small")
    low, high = ratio_interval([10.0, 12.0] * 4, [5.0, 5.0] * 4)
    assert 2.0 <= low <= 2.2 <= high <= 2.4
    delta, interval = paired_ratio_difference(([3.0] * 8, [1.0] * 8), ([2.0] * 8, [1.0] * 8))
    assert delta == 1.0 and interval == [1.0, 1.0]


def run_all(pair, store, configs, prompts):
    bench.run(pair, prompts, store, configs=configs, temperatures=[1.0, 0.7], new_tokens=6, seed=3)


def test_runs_interleave_resume_and_summarise(pair, tmp_path):
    configs = bench.parse_configs("autoregressive rrs:2x2 sps:1x3")
    whole = ResultStore(tmp_path / "whole.jsonl", {"run": 1}, ("temperature", "config", "prompt"), resume=False)
    run_all(pair, whole, configs, PROMPTS)
    records = whole.records()
    assert len(records) == 2 * 3 * len(PROMPTS)
    # interleaved: each prompt runs every configuration before the next prompt, the order rotating
    first = [r["config"] for r in records[:9]]
    assert first[:3] == ["autoregressive", "rrs 2x2", "sps 1x3"] and first[3:6] == [
        "rrs 2x2",
        "sps 1x3",
        "autoregressive",
    ]

    # an interrupted run (only the first prompt done), resumed, gives the same records
    part = tmp_path / "part.jsonl"
    run_all(
        pair, ResultStore(part, {"run": 1}, ("temperature", "config", "prompt"), resume=False), configs, PROMPTS[:1]
    )
    resumed = ResultStore(part, {"run": 1}, ("temperature", "config", "prompt"), resume=True)
    run_all(pair, resumed, configs, PROMPTS)
    key = lambda r: (r["temperature"], r["config"], r["prompt"])  # noqa: E731
    fields = ("tokens", "accepted_lengths", "expected_tokens", "tree_sizes", "target_calls")
    assert sorted((key(r), [r[f] for f in fields]) for r in resumed.records()) == sorted(
        (key(r), [r[f] for f in fields]) for r in records
    )

    rows = bench.summarise(records)
    assert [(r["temperature"], r["config"]) for r in rows][:3] == [
        (0.7, "autoregressive"),
        (0.7, "rrs 2x2"),
        (0.7, "sps 1x3"),
    ]
    for row in rows:
        assert row["prompts"] == len(PROMPTS) and row["tokens"] == 6 * len(PROMPTS)
        assert row["block_efficiency_ci95"] is None and row["speedup_ci95"] is None  # 3 prompts: no interval
        if row["config"] == "autoregressive":
            assert row["block_efficiency"] == 1.0 and row["speedup"] == 1.0
        else:
            assert 1.0 <= row["expected_block_efficiency"] <= 4.0
    assert bench.differences(records, [("rrs 2x2", "sps 1x3")])[0]["prompts"] == len(PROMPTS)


def test_paired_steps_share_contexts(pair):
    with pytest.raises(ValueError, match="uniform"):
        paired.check_plan(["rrs", "rrs-wor"], "3/2,1,0")
    with pytest.raises(ValueError, match="two distinct"):
        paired.check_plan(["rrs", "rrs"], "2x2")
    with pytest.raises(ValueError, match="requires k = 2"):
        paired.check_plan(["spechub", "rrs"], "3x2")
    result = paired.paired_steps(
        pair.target,
        pair.draft,
        PROMPTS[0],
        names=["spechub", "rrs", "rrs-wor"],
        tree="2x3",
        temperature=1.0,
        new_tokens=16,
        seed=0,
    )
    assert len(result["tokens"]) == 16
    lengths = {len(per_depth[d]) for per_depth in result["expected"].values() for d in per_depth}
    assert len(lengths) == 1  # every scheme and depth was measured at every step
    for per_depth in result["expected"].values():
        for step in range(lengths.pop() if False else len(per_depth[1])):
            values = [per_depth[d][step] for d in (1, 2, 3)]
            assert 1.0 <= values[0] <= values[1] + 1e-12 <= values[2] + 2e-12 <= 4.0 + 2e-12  # a cut never gains
    assert set(result["integrated"]) == {"spechub", "rrs", "rrs-wor"}  # every entry has a closed-form rate at k = 2
    for per_depth in result["integrated"].values():
        assert all(1.0 <= value <= 4.0 + 1e-12 for d in per_depth for value in per_depth[d])
        assert all(len(per_depth[d]) == len(result["expected"]["rrs"][1]) for d in per_depth)
