"""The demo's small run publishes its results file only when complete: runs at once or interrupted never mix or
cut it."""

from __future__ import annotations

import threading
import time

import pytest

from multidraft.bench import demo
from multidraft.bench import generate as bench
from multidraft.bench.store import read_lines

PROMPTS = [None, None, None]


def fake_run(tag: str, pause: float = 0.0, stop_after: int | None = None):
    """A stand-in for the benchmark loop: one record per prompt, tagged with the run that wrote it."""

    def run(pair, prompts, store, **kwargs):
        for index, _ in enumerate(prompts):
            if index == stop_after:
                raise KeyboardInterrupt
            store.append({"temperature": 1.0, "config": "autoregressive", "prompt": index, "run": tag})
            time.sleep(pause)

    return run


@pytest.fixture(autouse=True)
def no_warm_up(monkeypatch):
    monkeypatch.setattr(bench, "warm_up", lambda *args, **kwargs: 0.0)


def test_an_interrupted_small_run_leaves_the_previous_results_whole(tmp_path, monkeypatch):
    path = tmp_path / "demo" / "small.jsonl"
    monkeypatch.setattr(bench, "run", fake_run("first"))
    assert [r["run"] for r in demo.small_run(None, [], PROMPTS, path, top_k=None, top_p=None)] == ["first"] * 3
    before = path.read_bytes()
    monkeypatch.setattr(bench, "run", fake_run("second", stop_after=1))
    with pytest.raises(KeyboardInterrupt):
        demo.small_run(None, [], PROMPTS, path, top_k=None, top_p=None)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["small.jsonl"]


def test_small_runs_at_once_each_publish_a_whole_file(tmp_path, monkeypatch):
    path = tmp_path / "demo" / "small.jsonl"
    runs = {"a": fake_run("a", pause=0.05), "b": fake_run("b", pause=0.05)}
    local = threading.local()
    monkeypatch.setattr(bench, "run", lambda *args, **kwargs: runs[local.tag](*args, **kwargs))
    results = {}

    def small_run(tag):
        local.tag = tag
        results[tag] = demo.small_run(None, [], PROMPTS, path, top_k=None, top_p=None)

    threads = [threading.Thread(target=small_run, args=(tag,)) for tag in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {tag: [r["run"] for r in records] for tag, records in results.items()} == {"a": ["a"] * 3, "b": ["b"] * 3}
    lines, valid = read_lines(path)
    assert valid == path.stat().st_size and len(lines) == 4
    assert len({line["run"] for line in lines[1:]}) == 1  # one run's records, not a mixture
    assert sorted(p.name for p in path.parent.iterdir()) == ["small.jsonl"]


def test_the_small_run_compares_plain_sampling_with_auto_as_users_call_it(tmp_path, monkeypatch):
    """The planner's plans need not be fixed configurations (a chain stopped where the draft doubts, plain
    decoding), so the small run runs ``auto`` itself; on tiny models, with a stand-in cost measurement."""
    import torch

    from multidraft import planning
    from multidraft.bench.inputs import ModelPair
    from tests.support.models import tiny_llama
    from tests.support.planning import linear_profile

    monkeypatch.setenv("MULTIDRAFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(planning, "measure", lambda *a, **k: linear_profile(0.001, 0.002))
    pair = ModelPair(tiny_llama(0, layers=2), tiny_llama(1, layers=2), None, {}, (None, None))
    configs = bench.parse_configs(demo.SMALL_CONFIGS)
    prompts = [torch.tensor([3, 1, 4]), torch.tensor([1, 5])]
    records = demo.small_run(pair, configs, prompts, tmp_path / "small.jsonl", top_k=None, top_p=None)
    assert sorted({r["config"] for r in records}) == ["auto", "autoregressive"] and len(records) == 4
    assert all(len(r["tokens"]) == demo.SMALL_TOKENS for r in records)
