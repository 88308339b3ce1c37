"""``multidraft generate`` checks every argument before loading a model, and fails with one line and exit code 2."""

from __future__ import annotations

import pytest

from multidraft.cli import main


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--scheme", "nope"], "unknown scheme"),
        (["--scheme", "spechub", "--tree", "3x2"], "k = 2"),
        (["--tree", "2x0"], "depth"),
        (["--temperature", "-1"], "temperature"),
        (["--max-new-tokens", "0"], "max-new-tokens"),
        (["--target", "/nonexistent/target", "--draft", "/nonexistent/draft"], "nonexistent"),
        (["--target", "/nonexistent/target"], "both"),
        (["--min-draft-probability", "1"], "[0, 1)"),
        (["--scheme", "sps", "--tree", "1x4", "--verifier", "block", "--min-draft-probability", "0.4"], "token walk"),
        (["--scheme", "auto", "--tree", "auto", "--min-draft-probability", "0.4"], "fixed --scheme"),
    ],
)
def test_bad_arguments_fail_before_any_model_is_loaded(argv, message, capsys):
    assert main(["generate", *argv, "a prompt"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
