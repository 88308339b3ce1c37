"""The results store: durable appends, torn last lines never read back, resume only into the same run."""

from __future__ import annotations

import json

import pytest

from multidraft.bench.store import ResultStore, replace_atomically

HEADER = {"models": ["t", "d"], "seed": 0, "temperatures": (0.6, 1.0)}
KEY = ("temperature", "prompt")


def test_records_round_trip_and_resume_skips_done_work(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultStore(path, HEADER, KEY, resume=False)
    store.append({"temperature": 0.6, "prompt": 0, "tokens": [1, 2, 3], "x": 0.1 + 0.2})
    store.append({"temperature": 0.6, "prompt": 1, "tokens": [4]})
    assert store.done((0.6, 0)) and not store.done((1.0, 0))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0]) == {"header": json.loads(json.dumps(HEADER)), "key": list(KEY)}

    again = ResultStore(path, HEADER, KEY, resume=True)
    assert again.records() == store.records()
    assert again.records()[0]["x"] == 0.1 + 0.2  # floats read back exactly
    assert again.done((0.6, 1)) and not again.done((1.0, 1))
    with pytest.raises(ValueError, match="already holds"):
        again.append({"temperature": 0.6, "prompt": 1, "tokens": [9]})
    with pytest.raises(ValueError, match="key fields"):
        again.append({"temperature": 1.0})


@pytest.mark.parametrize(
    "tail", [b'{"temperature": 1.0, "prom', b'{"temperature": 1.0, "prompt": 5}', b"\x00\x00\x00\n"]
)
def test_a_torn_last_line_is_ignored_then_cut_away(tmp_path, tail):
    path = tmp_path / "results.jsonl"
    store = ResultStore(path, HEADER, KEY, resume=False)
    store.append({"temperature": 0.6, "prompt": 0})
    intact = path.read_bytes()
    with open(path, "ab") as file:
        file.write(tail)  # a write cut short by SIGKILL (or garbage from a crash)

    resumed = ResultStore(path, HEADER, KEY, resume=True)
    assert [r["prompt"] for r in resumed.records()] == [0]
    assert path.read_bytes().startswith(intact)  # nothing is touched until the next append
    resumed.append({"temperature": 1.0, "prompt": 5})
    assert path.read_bytes() == intact + b'{"temperature":1.0,"prompt":5}\n'
    assert [r["prompt"] for r in ResultStore(path, HEADER, KEY, resume=True).records()] == [0, 5]


def test_a_torn_header_starts_the_file_afresh(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"header": {"mod')
    store = ResultStore(path, HEADER, KEY, resume=True)
    assert store.records() == [] and json.loads(path.read_text())["key"] == list(KEY)


def test_refusals(tmp_path):
    path = tmp_path / "results.jsonl"
    ResultStore(path, HEADER, KEY, resume=False).append({"temperature": 0.6, "prompt": 0})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="already exists; pass --resume"):
        ResultStore(path, HEADER, KEY, resume=False)
    with pytest.raises(ValueError, match=r"other parameters \(seed: stored 0, now 1\)"):
        ResultStore(path, {**HEADER, "seed": 1}, KEY, resume=True)
    with pytest.raises(ValueError, match="keyed by"):
        ResultStore(path, HEADER, ("prompt",), resume=True)
    assert path.read_bytes() == before

    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(before.replace(b'"prompt":0', b'"prompt":0,,', 1) + b'{"temperature":1.0,"prompt":1}\n')
    with pytest.raises(ValueError, match="line 2 is not a JSON object; the results file is damaged"):
        ResultStore(damaged, HEADER, KEY, resume=True)
    other = tmp_path / "other.jsonl"
    other.write_text('{"rows": []}\n')
    with pytest.raises(ValueError, match="not a multidraft results file"):
        ResultStore(other, HEADER, KEY, resume=True)
    duplicated = tmp_path / "duplicated.jsonl"
    duplicated.write_bytes(before + before.splitlines(keepends=True)[1])
    with pytest.raises(ValueError, match="twice"):
        ResultStore(duplicated, HEADER, KEY, resume=True)


def test_empty_or_missing_files_start_fresh(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    for name, resume in (("empty.jsonl", False), ("missing.jsonl", True), ("deeper/new.jsonl", False)):
        assert ResultStore(tmp_path / name, HEADER, KEY, resume=resume).records() == []


def test_replace_atomically_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with replace_atomically(path) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]
    with replace_atomically(path) as temporary:
        temporary.write_bytes(b"new")
    assert path.read_bytes() == b"new" and list(tmp_path.iterdir()) == [path]
