"""Ctrl-C at every stage -- loading, converting, profiling, planning, benchmarking -- exits 130 with one line,
and leaves every output whole: no temporaries, no half-written cache entry or result.

Each run is a child process whose slow step is held (it prints ``HELD`` and
sleeps) so that SIGINT lands inside that step, as a Ctrl-C would.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from multidraft.bench.store import read_lines
from multidraft.planning import PROFILE_VERSION
from tests.support.child_process import child_env
from tests.support.tiny_pair import save_tiny_pair

_CHILD = textwrap.dedent(
    """
    import sys, time

    def hold(*args, **kwargs):
        print("HELD", file=sys.stderr, flush=True)
        time.sleep(600)

    stage, argv = sys.argv[1], sys.argv[2:]
    if stage == "load":
        import transformers
        transformers.AutoModelForCausalLM.from_pretrained = hold
    elif stage == "profile":
        from multidraft import planning
        planning.measure = hold
    elif stage == "plan":
        from multidraft import planning
        from tests.support.planning import fake_profile
        from multidraft import api
        planning.measure = lambda *args, **kwargs: fake_profile()
        api.pilot_prior = hold
    elif stage == "convert":
        from pathlib import Path
        from tests.support.fake_pair import spec_from_json
        from transformers import PreTrainedModel
        from multidraft.models import bundled
        spec = spec_from_json(Path(argv.pop(0)).read_text())
        bundled.PAIR = bundled.BundledPair(spec, spec, "tiny", 32)

        def save_part_then_hold(self, folder, **kwargs):
            (Path(folder) / "model.safetensors").write_bytes(bytes(1000))
            hold()

        PreTrainedModel.save_pretrained = save_part_then_hold
    elif stage == "bench":
        from multidraft.bench import generate
        run_one, calls, held_at = generate.run_one, [], int(argv.pop(0))

        def run_one_then_hold(*args, **kwargs):
            calls.append(1)
            if len(calls) == held_at:
                hold()
            return run_one(*args, **kwargs)

        generate.run_one = run_one_then_hold
    from multidraft.cli import main
    sys.exit(main(argv))
    """
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> list[str]:
    target, draft = save_tiny_pair(tmp_path_factory.mktemp("pair"))
    return ["--target", target, "--draft", draft]


def interrupt(stage: str, argv: list[str], cache: Path, *path: Path) -> tuple[int, str]:
    """Run ``multidraft ARGV`` with ``stage`` held, send SIGINT once it is held; exit status and stderr."""
    env = child_env(*path, MULTIDRAFT_CACHE=str(cache), OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, stage, *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # a test run started in the background inherits SIGINT ignored: restore the default, as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        text=True,
    )
    err = []
    for line in process.stderr:
        err.append(line)
        if line.strip() == "HELD":
            break
    else:
        pytest.fail(f"the run ended before its {stage} step: {''.join(err)[-2000:]}")
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    return process.returncode, "".join(err) + rest


def assert_one_interrupted_line(code: int, err: str, command: str) -> None:
    assert code == 130, err[-2000:]
    assert "Traceback" not in err
    assert err.rstrip("\n").split("\n")[-1] == f"{command}: interrupted"


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_ctrl_c_while_loading(pair, tmp_path):
    code, err = interrupt("load", ["generate", *pair, "--max-new-tokens", "4", "the a"], tmp_path)
    assert_one_interrupted_line(code, err, "multidraft generate")


def test_ctrl_c_while_profiling_leaves_no_profile(pair, tmp_path):
    out = tmp_path / "results"
    code, err = interrupt("profile", ["profile", *pair, "--out", str(out)], tmp_path / "cache")
    assert_one_interrupted_line(code, err, "multidraft profile")
    assert not out.exists() and not (tmp_path / "cache" / "plans").exists()


def test_ctrl_c_while_planning_keeps_the_finished_profile_whole(pair, tmp_path):
    from multidraft.models.cache import parse_entry

    out = tmp_path / "results"
    code, err = interrupt("plan", ["plan", *pair, "--out", str(out)], tmp_path / "cache")
    assert_one_interrupted_line(code, err, "multidraft plan")
    plans = tmp_path / "cache" / "plans"
    entries = sorted(p for p in plans.iterdir() if p.suffix == ".json")
    # the prior was being measured: absent
    assert [p.name.split("-")[0] for p in entries] == [f"profile{PROFILE_VERSION}"]
    assert parse_entry(entries[0])[1] is None and temporaries(plans) == [] and not out.exists()


def test_ctrl_c_while_converting_leaves_no_partial_folder_and_the_next_run_converts(tmp_path, monkeypatch):
    from tests.support.fake_pair import install_fake_spec, spec_json

    spec, site = install_fake_spec(tmp_path / "fake")
    monkeypatch.syspath_prepend(str(site))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec_json(spec))
    cache = tmp_path / "cache"
    code, err = interrupt("convert", [str(spec_file), "models", "prepare", "--cache", str(cache)], cache, site)
    assert_one_interrupted_line(code, err, "multidraft models prepare")
    models = sorted(p.name for p in (cache / "models").iterdir())
    assert models == ["tiny-test-model-hf-float32.lock", "tiny-test-model.gguf", "tiny-test-model.gguf.lock"]
    assert spec.hf_path(cache).is_dir()  # the lock went with the interrupted process


def test_ctrl_c_while_benchmarking_keeps_every_finished_record(pair, tmp_path):
    out = tmp_path / "results"
    configs = "autoregressive sps:1x2"
    argv = [
        "bench",
        "generate",
        *pair,
        "--configs",
        configs,
        "--temperatures",
        "1.0",
        "--prompts",
        "3",
        "--new-tokens",
        "4",
        "--max-prompt-tokens",
        "8",
        "--out",
        str(out),
        "--name",
        "run",
    ]
    # the warm-up runs each configuration once (runs 1 and 2); hold the fifth run: two records are stored by then
    code, err = interrupt("bench", ["5", *argv], tmp_path)
    assert_one_interrupted_line(code, err, "multidraft bench generate")
    results = out / "run.jsonl"
    lines, valid = read_lines(results)
    assert valid == results.stat().st_size  # no torn line
    assert len(lines) == 1 + 2 and json.loads(results.read_text().splitlines()[0])["key"]
    assert sorted(p.name for p in out.iterdir()) == ["run.jsonl"]  # no report of an unfinished run
