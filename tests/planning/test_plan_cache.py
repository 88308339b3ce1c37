"""The plan cache under races and faults: one measurement for concurrent runs, damaged files rebuilt, full disks."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import subprocess
import sys
import textwrap

import pytest

from multidraft import planning
from multidraft.models import CacheWriteError
from tests.support.child_process import child_env
from tests.support.models import tiny_llama
from tests.support.planning import fake_prior, fake_profile

CALLS: list[str] = []  # the stand-in measurements made, in order


@pytest.fixture()
def pair(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDRAFT_CACHE", str(tmp_path))
    return tiny_llama(0), tiny_llama(1)


@pytest.fixture()
def measured(monkeypatch) -> list[str]:
    """Stand-ins for the minute-long measurements; each call is logged."""
    CALLS.clear()
    monkeypatch.setattr(planning, "measure", lambda *a, **k: CALLS.append("profile") or fake_profile())
    return CALLS


def _profile(pair):
    return planning.cached_profile(*pair)


def _prior(pair):
    return planning.cached_prior(*pair, 1.0, None, None, lambda: CALLS.append("prior") or fake_prior())


def _next_digit(text: str) -> str:
    """The first digit of the file one higher: a changed number that still parses."""
    return re.sub(r"\d", lambda digit: str((int(digit[0]) + 1) % 10), text, count=1)


CASES = {
    "profile": (_profile, lambda pair: planning.profile_path(*pair), fake_profile),
    "prior": (_prior, lambda pair: planning.prior_path(*pair, 1.0, None, None), fake_prior),
}


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize(
    "damage",
    [lambda text: text[: len(text) // 3], _next_digit, lambda text: "{}"],
    ids=["cut short", "changed value", "no checksum"],
)
def test_a_damaged_plan_file_is_discarded_with_one_warning_line_and_measured_again(
    pair, measured, caplog, kind, damage
):
    cached, path_of, expected = CASES[kind]
    first = cached(pair)
    assert first == expected() and measured == [kind]
    path = path_of(pair)
    path.write_text(damage(path.read_text()))
    with caplog.at_level(logging.WARNING):
        assert cached(pair) == expected()
    assert measured == [kind, kind]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"discarding the damaged cache file {path} (") and "\n" not in warning
    assert cached(pair) == expected() and measured == [kind, kind]  # the rebuilt file is used


@pytest.mark.parametrize("kind", CASES)
def test_a_full_disk_while_caching_a_measurement_leaves_no_partial_file(pair, measured, monkeypatch, kind):
    cached, path_of, _ = CASES[kind]

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", no_space)
        with pytest.raises(CacheWriteError, match="no space left on the device"):
            cached(pair)
    plans = path_of(pair).parent
    assert sorted(p.name for p in plans.iterdir()) == [path_of(pair).name + ".lock"]


_RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from tests.support.models import tiny_llama
    from tests.support.planning import fake_profile
    from multidraft import planning

    barrier, log = Path(sys.argv[1]), Path(sys.argv[2])

    def measure(*args, **kwargs):
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\\n")
        time.sleep(2.0)  # long enough for the other process to arrive while this one measures
        return fake_profile(0.001 * (1 + os.getpid() % 7))

    planning.measure = measure
    target, draft = tiny_llama(0), tiny_llama(1)
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.01)
    print(json.dumps(planning.cached_profile(target, draft).target.seconds))
    """
)


def test_two_first_runs_profiling_at_once_measure_once_and_plan_from_the_same_profile(tmp_path):
    barrier, log = tmp_path / "barrier", tmp_path / "measurements.log"
    barrier.mkdir()
    env = child_env(MULTIDRAFT_CACHE=str(tmp_path / "cache"))
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(barrier), str(log)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err[-2000:] for _, err in outputs]
    (measurer,) = log.read_text().split()
    seconds = [json.loads(out) for out, _ in outputs]
    assert seconds[0] == seconds[1] == fake_profile(0.001 * (1 + int(measurer) % 7)).target.seconds
    assert (
        sum("waiting for another multidraft process to finish profiling this machine" in err for _, err in outputs) == 1
    )


@pytest.mark.parametrize("kind", CASES)
def test_a_cached_plan_file_gives_one_object_per_process(pair, measured, kind):
    """Read twice, the same cached content is the same object, so what the planner derives from it (its table,
    and the table's seconds per profile) is built once per process, not at every generation."""
    cached = CASES[kind][0]
    assert cached(pair) is cached(pair) and measured == [kind]
