"""``--engine``: GGUF files run as they are on llama.cpp, the planner on that engine, and the refusals."""

from __future__ import annotations

import json

import pytest
import torch

from multidraft import planning
from multidraft.bench import inputs
from multidraft.cli import main
from tests.support.llama_gguf import write_tiny_llama
from tests.support.planning import linear_profile

llama_cpp = pytest.importorskip("llama_cpp")

from multidraft.runners.llama import LlamaRunner  # noqa: E402


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggufs")
    return (
        write_tiny_llama(folder / "target.gguf", seed=0, letters=True),
        write_tiny_llama(folder / "draft.gguf", seed=1, letters=True),
    )


@pytest.fixture(autouse=True)
def torch_threads():
    """The llama engine leaves torch one thread (it only samples); later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDRAFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def no_torch_model(monkeypatch):
    """Loading any PyTorch model fails the test: the llama engine never de-quantises."""

    def refuse(*args, **kwargs):
        raise AssertionError("a PyTorch model was loaded on the llama engine")

    monkeypatch.setattr(inputs, "load_pair", refuse)
    monkeypatch.setattr("multidraft.models.load_causal_lm", refuse)


def test_generate_runs_a_gguf_pair_on_llama_cpp(ggufs, cache, no_torch_model, capsys):
    target, draft = ggufs
    argv = ["generate", "--engine", "llama", "--target", str(target), "--draft", str(draft)]
    argv += ["--scheme", "rrs", "--tree", "2x2", "--threads", "1", "--max-new-tokens", "12", "a b c"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    assert "[rrs 2x2 token, llama] 12 tokens in" in err


def test_auto_engine_picks_llama_for_gguf_files_and_torch_without_the_binding(ggufs, tmp_path, monkeypatch):
    target, draft = ggufs
    assert inputs.choose_engine("auto", str(target), str(draft)) == "llama"
    assert inputs.choose_engine("auto", None, None) == "llama"  # the bundled pair's sources are GGUF files
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert inputs.choose_engine("auto", str(target), str(folder)) == "torch"
    monkeypatch.setattr(inputs, "llama_available", lambda: False)
    assert inputs.choose_engine("auto", str(target), str(draft)) == "torch"


def test_auto_engine_takes_torch_when_the_draft_is_cut_the_torch_way(ggufs, monkeypatch):
    chosen = []

    def record(*args, **kwargs):
        chosen.append("torch")
        raise ValueError("stop here")

    monkeypatch.setattr(inputs, "load_pair", record)
    argv = ["generate", "--target", str(ggufs[0]), "--draft", str(ggufs[1]), "--draft-vocab", "20", "a b"]
    assert main(argv) == 2 and chosen == ["torch"]


def test_auto_plans_on_the_llama_engine_with_a_profile_of_its_own(ggufs, cache, monkeypatch, capsys):
    measured = []
    monkeypatch.setattr(planning, "measure", lambda *a, **k: measured.append(a[2]) or linear_profile(0.001, 0.002))
    target, draft = ggufs
    argv = ["generate", "--target", str(target), "--draft", str(draft), "--scheme", "auto", "--tree", "auto"]
    assert main([*argv, "--threads", "1", "--max-new-tokens", "10", "a b"]) == 0
    err = capsys.readouterr().err
    assert "[auto auto token, mostly " in err and ", llama] 10 tokens in" in err
    [description] = measured
    assert description["engine"] == "llama.cpp" and description["target_threads"] == 1
    assert description["target_file"]["bytes"] == target.stat().st_size
    assert len(list((cache / "plans").glob("profile*.json"))) == 1
    [prior] = (cache / "plans").glob("prior*.json")  # no shipped prior for this pair: a pilot on the prompt
    assert "pilot" in prior.read_text()

    # the same files on torch (de-quantised) have another profile and prior; other threads another profile
    from multidraft.models import load_causal_lm

    with LlamaRunner(target, threads=1) as t, LlamaRunner(draft, threads=1) as d:
        llama_path = planning.profile_path(t, d)
        llama_key = planning.pair_key(planning.model_description(t, d))
    with LlamaRunner(target, threads=2) as t, LlamaRunner(draft, threads=2) as d:
        assert planning.profile_path(t, d) != llama_path
    torch_pair = load_causal_lm(target), load_causal_lm(draft)
    assert planning.profile_path(*torch_pair) != llama_path
    assert llama_key == {"engine": "llama.cpp", "target": "target.gguf", "draft": "draft.gguf"}
    assert planning.pair_key(planning.model_description(*torch_pair)) != llama_key


def test_a_measured_llama_profile_has_forward_costs_and_no_roofline(ggufs):
    with LlamaRunner(ggufs[0], threads=1) as target, LlamaRunner(ggufs[1], threads=1) as draft:
        names = planning.model_description(target, draft)
        profile = planning.measure(target, draft, names, queries=(1, 4), contexts=(8, 32), prefill=(16,))
    assert profile.target.queries == [1, 4, 16] and profile.target.contexts == [8, 32]
    assert all(s > 0 for row in profile.target.seconds + profile.draft.seconds for s in row)
    assert profile.roofline == {
        role: {"file_bytes": path.stat().st_size} for role, path in zip(("target", "draft"), ggufs)
    }
    assert profile.overheads["keep_path"] >= 0
    json.dumps(profile.models)


def test_the_pilot_prior_runs_on_llama_runners(ggufs):
    from multidraft.api import PILOT_TOKENS, pilot_prior

    with LlamaRunner(ggufs[0], threads=1) as target, LlamaRunner(ggufs[1], threads=1) as draft:
        prior = pilot_prior(target, draft, torch.tensor([30, 31, 32]), 1.0, None, None)
    assert prior.rates.positions == PILOT_TOKENS and len(prior.agreement) == PILOT_TOKENS
    assert all(0 <= a <= 1 + 1e-9 for a in prior.agreement)


def _hf_folder(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    "case,message",
    [
        ("hf draft", "the draft"),
        ("not a model", "not a model folder or .gguf file"),
        ("no binding", "llama-cpp-python"),
        ("draft vocab", "--draft-vocab"),
        ("threads", "--threads"),
        ("auto scheme", "the planner does not cover scheme"),
    ],
)
def test_bad_engine_requests_fail_with_one_line_before_loading(case, message, ggufs, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(inputs, "load_pair", refuse)
    monkeypatch.setattr(inputs, "load_llama_pair", refuse)
    target, draft = str(ggufs[0]), str(ggufs[1])
    extra = []
    if case == "hf draft":
        draft = str(_hf_folder(tmp_path))
    elif case == "not a model":
        (tmp_path / "weights.bin").write_bytes(b"0")
        target = str(tmp_path / "weights.bin")
    elif case == "no binding":
        monkeypatch.setattr(inputs, "llama_available", lambda: False)
    elif case == "draft vocab":
        extra = ["--draft-vocab", "20"]
    elif case == "threads":
        extra = ["--threads", "0"]
    elif case == "auto scheme":
        extra = ["--scheme", "otm", "--tree", "auto"]
    argv = ["generate", "--engine", "llama", "--target", target, "--draft", draft, *extra, "a b"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_bench_generate_compares_the_engines_in_one_run(ggufs, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(planning, "measure", lambda *a, **k: linear_profile(0.001, 0.002))
    configs = "autoregressive auto rrs:2x2 topk:1x3:match llama-plain torch-plain"
    argv = ["bench", "generate", "--engine", "llama", "--target", str(ggufs[0]), "--draft", str(ggufs[1])]
    argv += ["--threads", "1", "--configs", configs, "--prompts", "2", "--new-tokens", "6", "--temperatures", "1.0"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "generate.json").read_text())
    assert (report["header"]["engine"], report["header"]["threads"]) == ("llama", 1)
    rows = {row["config"]: row for row in report["rows"]}
    assert set(rows) == {"autoregressive", "auto", "rrs 2x2", "topk 1x3 match", "llama-plain", "torch-plain"}
    assert all(row["tokens"] == 12 and row["tokens_per_second"] > 0 for row in rows.values())
    assert "llama-plain" in capsys.readouterr().out


def test_bench_paired_compares_verifiers_at_the_same_contexts_on_llama_cpp(ggufs, cache, no_torch_model, tmp_path):
    argv = ["bench", "paired", "--engine", "llama", "--target", str(ggufs[0]), "--draft", str(ggufs[1])]
    argv += ["--threads", "1", "--schemes", "sps,topk:match", "--tree", "1x3", "--prompts", "2"]
    assert main([*argv, "--new-tokens", "6", "--temperatures", "1.0", "--out", str(tmp_path / "out")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "paired.jsonl").read_text().splitlines()]
    header, records = lines[0]["header"], lines[1:]
    assert (header["engine"], header["threads"]) == ("llama", 1) and len(records) == 2
    for record in records:
        sps, match = record["expected"]["sps"]["3"], record["expected"]["topk:match"]["3"]
        assert len(sps) == len(match) > 0  # one exact expectation per step for each, at the same contexts
        assert all(1 - 1e-6 <= value <= 4 + 1e-6 for value in sps + match)  # a chain of 3 emits 1 to 4 tokens


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--configs", "hf-same:2"], "--engine torch"),
        (["--configs", "rrs:2x2", "--draft-vocab", "8"], "--draft-vocab"),
        (["--configs", "llama-plain", "--engine", "torch", "--target", "HF", "--draft", "HF"], "Hugging Face folder"),
    ],
)
def test_bench_generate_refuses_what_its_engine_cannot_run(extra, message, ggufs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inputs, "load_pair", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr(inputs, "load_llama_pair", lambda *a, **k: pytest.fail("a model was loaded"))
    paths = ["--target", str(ggufs[0]), "--draft", str(ggufs[1])]
    if "HF" in extra:
        folder = str(_hf_folder(tmp_path))
        extra, paths = [folder if x == "HF" else x for x in extra], []
    argv = ["bench", "generate", "--engine", "llama", *paths, *extra, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
