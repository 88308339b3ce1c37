"""``multidraft record``: which prompts it takes (``--offset``) and the categories it stores with them."""

from __future__ import annotations

import pytest

from multidraft.bench.recording import Recording
from multidraft.cli import main
from multidraft.prompts import CATEGORIES, load_prompts
from tests.support.tiny_pair import save_tiny_pair


def test_offset_prompts_and_their_categories_are_recorded(tmp_path):
    target, draft = save_tiny_pair(tmp_path / "models")
    out = tmp_path / "rec.npz"
    argv = [
        "record",
        "--target",
        target,
        "--draft",
        draft,
        "--prompts",
        str(len(CATEGORIES)),
        "--offset",
        "40",
        "--new-tokens",
        "3",
        "--max-prompt-tokens",
        "8",
        "--top-n",
        "4",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    recording = Recording.load(out)
    assert recording.header["prompt_offset"] == 40
    assert recording.header["categories"] == list(CATEGORIES)
    assert recording.header["prompts"] == [f"{c}/{load_prompts(c)[40].id}" for c in CATEGORIES]
    assert list(recording.categories()) == [c for c in CATEGORIES for _ in range(3)]


@pytest.mark.parametrize(
    "argv,message", [(["--offset", "-1"], "offset must be >= 0"), (["--offset", "1000"], "only 0 are left")]
)
def test_bad_offsets_fail_before_any_model_is_loaded(argv, message, tmp_path, capsys):
    models = ["--target", "/nonexistent/target", "--draft", "/nonexistent/draft"]
    assert main(["record", *models, *argv, "--out", str(tmp_path / "rec.npz")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
