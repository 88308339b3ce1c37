"""``multidraft theory`` prints every scheme's exact rate beside alpha*, and bad input exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multidraft.cli import main
from multidraft.theory import acceptance, optimal_acceptance


def test_table_lists_every_scheme(capsys):
    assert main(["theory", "--k", "2", "--p", "0.5,0.3,0.2", "--q", "0.6,0.3,0.1"]) == 0
    out = capsys.readouterr().out
    for name in ("sps", "rrs", "rrs-wor", "kseq", "spechub", "greedy", "otm"):
        assert f"\n{name} " in out
    assert f"{acceptance('rrs', [0.5, 0.3, 0.2], [0.6, 0.3, 0.1], 2):.6f}" in out


def test_json_output_and_npy_files(tmp_path, capsys):
    p, q = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.4, 0.3, 0.2, 0.1])
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    assert (
        main(["theory", "--k", "3", "--p-file", str(tmp_path / "p.npy"), "--q-file", str(tmp_path / "q.npy"), "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    rows = {row["scheme"]: row for row in report["schemes"]}
    assert rows["kseq"]["acceptance"] == pytest.approx(acceptance("kseq", p, q, 3), abs=1e-15)
    assert rows["rrs-wor"]["optimal"] == pytest.approx(optimal_acceptance("wor", p, q, 3), abs=1e-15)
    assert rows["spechub"]["acceptance"] is None and "k = 2" in rows["spechub"]["note"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--k", "0"], "at least 1"),
        (["--p", "0.5,0.6", "--q", "0.5,0.5"], "sum to 1"),
        (["--p", "0.5,0.5", "--q", "0.5,0.25,0.25"], "same length"),
        (["--p", "a,b", "--q", "0.5,0.5"], "comma-separated"),
        (["--p-file", "/nonexistent.npy", "--q", "1"], "does not exist"),
        (["--p=-0.5,1.5", "--q", "0.5,0.5"], "negative"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    assert main(["theory", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_usage_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["theory", "--k", "two"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
