"""A full disk ends a command with one line and exit status 1, and the results written so far stay whole."""

from __future__ import annotations

import errno
import os

from multidraft.bench.store import read_lines
from multidraft.cli import main
from tests.support.tiny_pair import save_tiny_pair


def test_a_full_disk_while_appending_benchmark_results_prints_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    target, draft = save_tiny_pair(tmp_path)
    results = tmp_path / "results" / "run.jsonl"
    argv = [
        "bench",
        "generate",
        "--target",
        target,
        "--draft",
        draft,
        "--configs",
        "autoregressive",
        "--temperatures",
        "1.0",
        "--prompts",
        "2",
        "--new-tokens",
        "2",
        "--max-prompt-tokens",
        "4",
        "--out",
        str(results.parent),
        "--name",
        "run",
    ]
    fsync = os.fsync
    appended = []

    def fill_the_disk_after_the_first_record(fd):
        appended.append(fd)
        if len(appended) == 3:  # the header, the first record, then the second record finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", fill_the_disk_after_the_first_record)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.endswith("\nmultidraft bench generate: error: No space left on device\n") and "Traceback" not in err
    lines, _ = read_lines(results)
    assert [line.get("prompt") for line in lines] == [None, 0]  # the header and the first record
