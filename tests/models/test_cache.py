"""The cache's writes: atomic, built once under a lock by racing processes, checksummed, clean on a full disk."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from multidraft.models import cache
from multidraft.models.cache import CacheWriteError, cached_entry, parse_entry, replace_atomically, write_entry
from tests.support.child_process import child_env


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_entry_reads_back_what_was_written_and_carries_its_checksum(tmp_path):
    path = tmp_path / "plans" / "entry.json"
    write_entry(path, {"b": [1.5, None], "a": "x"})
    assert parse_entry(path) == ({"b": [1.5, None], "a": "x"}, None)
    stored = json.loads(path.read_text())
    assert set(stored) == {"a", "b", "sha256"} and len(stored["sha256"]) == 64
    assert _leftovers(path.parent) == []


@pytest.mark.parametrize(
    "damage,problem",
    [
        (lambda text: text[: len(text) // 2], "does not parse"),
        (lambda text: text.replace("1.5", "1.6"), "does not match its checksum"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "sha256"}), "carries no checksum"),
    ],
    ids=["cut short", "changed value", "no checksum"],
)
def test_a_damaged_entry_is_discarded_with_one_warning_line_and_rebuilt(tmp_path, caplog, damage, problem):
    path = tmp_path / "entry.json"
    write_entry(path, {"value": 1.5})
    path.write_text(damage(path.read_text()))
    builds = []
    with caplog.at_level(logging.WARNING):
        data = cached_entry(path, "measuring", lambda: builds.append(1) or {"value": 2.5})
    assert data == {"value": 2.5} and builds == [1]
    assert parse_entry(path) == ({"value": 2.5}, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(path) in warnings[0] and problem in warnings[0] and "measuring again" in warnings[0]


def test_a_sound_entry_is_used_without_building(tmp_path):
    path = tmp_path / "entry.json"
    write_entry(path, {"value": 1})
    assert cached_entry(path, "measuring", lambda: pytest.fail("built although cached")) == {"value": 1}


def test_a_full_disk_leaves_the_old_entry_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "entry.json"
    write_entry(path, {"value": 1})
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(CacheWriteError, match=r"cannot write .*entry.json: no space left on the device") as info:
        write_entry(path, {"value": 2})
    assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_a_full_disk_while_building_leaves_no_entry(tmp_path, monkeypatch):
    path = tmp_path / "entry.json"
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(CacheWriteError):
        cached_entry(path, "measuring", lambda: {"value": 1})
    assert not path.exists() and _leftovers(tmp_path) == []


def test_a_library_error_quoting_a_full_disk_becomes_cache_write_error(tmp_path):
    # the safetensors writer reports the OS error inside its own exception type
    class SafetensorError(Exception):
        pass

    with pytest.raises(CacheWriteError, match="no space left"):
        with replace_atomically(tmp_path / "weights.bin"):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged_and_leave_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with replace_atomically(tmp_path / "x.json") as temporary:
            temporary.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_the_free_space_check_names_what_is_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_free_bytes", lambda folder: 2 * 10**9)
    with pytest.raises(CacheWriteError, match=r"converting X needs about 7.10 GB free in .*, but 2.00 GB are free"):
        cache.require_free_space(tmp_path, 7_100_000_000, "converting X")
    cache.require_free_space(tmp_path, 10**9, "converting X")


def test_stale_temporaries_are_removed_under_the_lock(tmp_path):
    path = tmp_path / "models" / "m-hf-float32"
    path.parent.mkdir()
    (path.parent / ".m-hf-float32.abc123.tmp").mkdir()  # a folder left by a killed writer
    (path.parent / ".m-hf-float32.abc123.tmp" / "model.safetensors").write_bytes(b"x" * 100)
    (path.parent / "m-hf-float32.tmp4242").mkdir()  # the name earlier versions used
    (path.parent / ".other.abc.tmp").write_text("another entry's")
    with cache.locked(path, "converting"):
        pass
    assert sorted(p.name for p in path.parent.iterdir()) == [".other.abc.tmp", "m-hf-float32.lock"]


_RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from multidraft.models.cache import cached_entry

    path, barrier, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.01)

    def build():
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\\n")
        time.sleep(2.0)  # long enough for the other process to arrive while this one builds
        return {"built_by": os.getpid()}

    print(json.dumps(cached_entry(path, "measuring", build)))
    """
)


def test_two_processes_racing_build_the_entry_once_and_both_use_it(tmp_path):
    barrier, log = tmp_path / "barrier", tmp_path / "builds.log"
    barrier.mkdir()
    path = tmp_path / "plans" / "entry.json"
    env = child_env()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(path), str(barrier), str(log)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    builders = log.read_text().split()
    assert len(builders) == 1
    results = [json.loads(out) for out, _ in outputs]
    assert results[0] == results[1] == {"built_by": int(builders[0])}
    waited = [err for _, err in outputs if "waiting for another multidraft process to finish measuring" in err]
    assert len(waited) == 1
    assert _leftovers(path.parent) == []
