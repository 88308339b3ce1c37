"""Killed runs lose nothing: ``record`` killed with SIGKILL mid-run, then ``--resume``, equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from multidraft.bench.recording import COLUMNS, Recording
from multidraft.cli import main
from multidraft.cli.record import journal_path
from tests.support.tiny_pair import save_tiny_pair

PROMPTS = 10
RECORD = [
    "--prompts",
    str(PROMPTS),
    "--new-tokens",
    "150",
    "--max-prompt-tokens",
    "8",
    "--top-n",
    "8",
    "--temperature",
    "0.8",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the OMP_NUM_THREADS=1 subprocesses
    yield save_tiny_pair(tmp_path_factory.mktemp("models"))
    torch.set_num_threads(threads)


def cli(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "multidraft.cli", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def kill_after_records(process: subprocess.Popen, journal, records: int) -> None:
    """SIGKILL ``process`` once ``journal`` holds ``records`` results (its header is the first line)."""
    deadline = time.monotonic() + 120
    while not (journal.is_file() and journal.read_bytes().count(b"\n") > records):
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the run never journaled its first results"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_record_killed_then_resumed_equals_an_uninterrupted_run(models, tmp_path, capsys):
    target, draft = models
    pair = ["--target", target, "--draft", draft]
    reference = tmp_path / "reference.npz"
    assert main(["record", *pair, *RECORD, "--out", str(reference)]) == 0
    assert not journal_path(reference).exists()  # removed once the .npz is in place

    out = tmp_path / "resumed.npz"
    kill_after_records(cli("record", *pair, *RECORD, "--out", str(out)), journal_path(out), records=2)
    assert not out.exists()
    done = journal_path(out).read_bytes().count(b"\n") - 1
    assert 2 <= done < PROMPTS, "the run was not killed in the middle"
    with open(journal_path(out), "ab") as journal:
        journal.write(b'{"prompt": 9, "token_ids": [[1, 2')  # and a torn line, as from a kill inside a write

    assert main(["record", *pair, *RECORD, "--out", str(out)]) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert main(["record", *pair, *RECORD[:-2], "--seed", "4", "--out", str(out), "--resume"]) == 2
    assert "seed: stored 3, now 4" in capsys.readouterr().err
    assert main(["record", *pair, *RECORD, "--draft-precision", "float32", "--out", str(out), "--resume"]) == 2
    assert "draft_precision: stored 'int8', now 'float32'" in capsys.readouterr().err

    assert main(["record", *pair, *RECORD, "--out", str(out), "--resume"]) == 0
    expected, resumed = Recording.load(reference), Recording.load(out)
    assert resumed.header == expected.header
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(resumed, name), getattr(expected, name), err_msg=name)
    assert np.array_equal(np.unique(resumed.prompt_index), np.arange(PROMPTS))
    assert not journal_path(out).exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "reference.npz",
        "resumed.npz",
    ]


#: Fields of a ``bench generate`` record that are wall-clock measurements, not results.
TIMINGS = {"seconds", "draft_seconds", "target_seconds", "verification_seconds", "step_seconds"}
BENCH = [
    "--configs",
    "autoregressive rrs:2x2 spechub:2x2",
    "--temperatures",
    "0.8",
    "--prompts",
    "4",
    "--new-tokens",
    "60",
    "--max-prompt-tokens",
    "8",
    "--seed",
    "5",
]


def results(path) -> dict:
    """The records of a results file by key, without their timings; fails on a repeated key."""
    from multidraft.bench.store import read_lines

    lines, _ = read_lines(path)
    by_key = {
        (r["temperature"], r["config"], r["prompt"]): {k: v for k, v in r.items() if k not in TIMINGS}
        for r in lines[1:]
    }
    assert len(by_key) == len(lines) - 1, "a record is stored twice"
    return by_key


def test_bench_generate_killed_then_resumed_equals_an_uninterrupted_run(models, tmp_path, capsys):
    target, draft = models
    pair = ["--target", target, "--draft", draft]
    assert main(["bench", "generate", *pair, *BENCH, "--out", str(tmp_path / "reference")]) == 0
    expected = results(tmp_path / "reference" / "generate.jsonl")
    assert len(expected) == 3 * 4

    out = tmp_path / "resumed"
    journal = out / "generate.jsonl"
    kill_after_records(cli("bench", "generate", *pair, *BENCH, "--out", str(out)), journal, records=3)
    assert 3 <= len(results(journal)) < len(expected), "the run was not killed in the middle"
    with open(journal, "ab") as file:
        file.write(b'{"temperature": 0.8, "config": "rrs 2x2", "pro')

    assert main(["bench", "generate", *pair, *BENCH, "--out", str(out)]) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert main(["bench", "generate", *pair, *BENCH, "--out", str(out), "--resume"]) == 0
    assert results(journal) == expected
