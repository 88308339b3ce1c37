"""Append-only JSON-lines results, so that a killed benchmark resumes where it stopped.

A results file is one JSON object per line: first a **header** line
``{"header": {...run parameters...}, "key": [field names]}``, then one line
per finished unit of work (a prompt, a configuration at a temperature, ...).
A record is identified by its **key**, the values of the header's key fields.

Durability: each record is appended with a single ``write`` of the whole
line, then ``flush`` and ``os.fsync``, so after a crash (even SIGKILL or a
power cut) every record is either complete or a torn last line.  A torn last
line -- no trailing newline, or text that does not parse -- is never read
back: the reader ignores it and the next append first truncates it away.  A
damaged line *before* the last cannot come from an interrupted append, so it
raises ``ValueError`` instead of being guessed around.

Safety: without ``resume`` an existing non-empty file is refused (it is never
overwritten or extended by accident); with ``resume`` the stored header must
equal the current run's parameters, otherwise results of two different runs
would be mixed.  Appending a key twice is refused too, so a resumed run can
neither duplicate nor drop a row.

:func:`replace_atomically` (from :mod:`multidraft.models.cache`) writes a
whole output file (``.npz``, ``.json``) through a temporary file and
``os.replace``, so readers see the old file or the new one, never a
half-written one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from multidraft.models.cache import fsync_directory, replace_atomically

__all__ = ["ResultStore", "read_lines", "replace_atomically"]


def _normal(value):
    """``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def _frozen(value):
    """A hashable form of a JSON value (lists become tuples)."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def read_lines(path: Path) -> tuple[list[dict], int]:
    """The complete JSON-object lines of ``path`` and the byte length they span (the rest is a torn tail)."""
    data = path.read_bytes()
    lines, end = [], 0
    while end < len(data):
        newline = data.find(b"\n", end)
        if newline < 0:
            break  # a final line without its newline: torn
        try:
            value = json.loads(data[end:newline])
        except ValueError:
            value = None
        if not isinstance(value, dict):
            if newline + 1 < len(data):
                raise ValueError(f"{path} line {len(lines) + 1} is not a JSON object; the results file is damaged")
            break  # the last line does not parse: torn
        lines.append(value)
        end = newline + 1
    return lines, end


class ResultStore:
    """An append-only results file keyed by ``key`` fields (see module docstring).

    ``header`` are the run's parameters (JSON-serialisable); every record must
    hold the ``key`` fields.  Opening checks the file as described above and
    raises ``ValueError`` naming the path and the problem.
    """

    def __init__(self, path: str | os.PathLike, header: dict, key: Sequence[str], *, resume: bool):
        self.path = Path(path)
        self.key = tuple(key)
        self.header = _normal(header)
        self._records: list[dict] = []
        self._done: set = set()
        self._valid_bytes = 0
        stored = self.path.is_file() and self.path.stat().st_size > 0
        if stored and not resume:
            raise ValueError(
                f"results file {self.path} already exists; pass --resume to continue it, or choose another output"
            )
        lines, self._valid_bytes = read_lines(self.path) if stored else ([], 0)
        if lines:
            self._check_header(lines[0])
            for record in lines[1:]:
                self._remember(record)
        else:
            self._append_line({"header": self.header, "key": list(self.key)})

    def _check_header(self, line: dict) -> None:
        if set(line) != {"header", "key"}:
            raise ValueError(f"{self.path} does not start with a results header; it is not a multidraft results file")
        if line["key"] != list(self.key):
            raise ValueError(f"{self.path} is keyed by {line['key']}, this run by {list(self.key)}")
        stored = line["header"]
        if stored != self.header:
            names = sorted(
                n for n in set(stored) | set(self.header) if stored.get(n, "absent") != self.header.get(n, "absent")
            )
            diffs = "; ".join(
                f"{n}: stored {stored.get(n, 'absent')!r}, now {self.header.get(n, 'absent')!r}" for n in names
            )
            raise ValueError(f"cannot resume {self.path}: its run had other parameters ({diffs})")

    def key_of(self, record: dict) -> tuple:
        """The key of ``record`` (its values of the key fields)."""
        missing = [name for name in self.key if name not in record]
        if missing:
            raise ValueError(f"record lacks the key fields {missing}")
        return _frozen(_normal([record[name] for name in self.key]))

    def _remember(self, record: dict) -> None:
        key = self.key_of(record)
        if key in self._done:
            raise ValueError(f"{self.path} holds the record {dict(zip(self.key, key))} twice")
        self._done.add(key)
        self._records.append(record)

    def done(self, key: Sequence) -> bool:
        """Whether a record with this key (values in the order of the key fields) is stored."""
        return _frozen(_normal(list(key))) in self._done

    def records(self) -> list[dict]:
        """The stored records in the order they were appended (as read back from JSON)."""
        return list(self._records)

    def append(self, record: dict) -> None:
        """Store one record durably; ``ValueError`` if its key is already stored."""
        record = _normal(record)
        if self.key_of(record) in self._done:
            raise ValueError(f"{self.path} already holds the record {dict(zip(self.key, self.key_of(record)))}")
        self._append_line(record)
        self._remember(record)

    def _append_line(self, value: dict) -> None:
        """One ``write`` of the whole line after cutting any torn tail, then fsync."""
        line = (json.dumps(value, separators=(",", ":")) + "\n").encode()
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as file:
            if file.tell() != self._valid_bytes:
                file.truncate(self._valid_bytes)
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        self._valid_bytes += len(line)
        if new:
            fsync_directory(self.path.parent)
