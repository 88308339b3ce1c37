"""Real prompts shipped with the package (openly licensed; see data/prompts/SOURCES.md).

Four categories, mirroring the usual speculative-decoding workloads:

* ``"summarization"`` (120): "summarise this article" requests over English Wikipedia lead
  sections (CC BY-SA 4.0) -- a CNN/DailyMail-like task (long input, short output);
* ``"webtext"`` (150): the first half of a Wikipedia lead section as raw text to continue
  (OpenWebText-like plain continuation), with the true rest as ``reference``;
* ``"chat"`` (160): MT-Bench (80) and Vicuna-bench (80) questions from FastChat (Apache-2.0);
* ``"code"`` (164): OpenAI's HumanEval problems (MIT), each a Python signature and docstring
  framed as "Complete the following Python function.", with the canonical solution as ``reference``.

The files were produced by ``scripts/build_prompts.py`` from pinned PyPI packages.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["CATEGORIES", "Prompt", "load_prompts", "prompt_counts"]

CATEGORIES: tuple[str, ...] = ("summarization", "webtext", "chat", "code")

_ALIASES = {
    "news": "summarization",
    "summarisation": "summarization",
    "summary": "summarization",
    "cnn_dm": "summarization",
    "web": "webtext",
    "owt": "webtext",
    "openwebtext": "webtext",
    "mt_bench": "chat",
    "mt-bench": "chat",
    "humaneval": "code",
    "python": "code",
}


@dataclass(frozen=True)
class Prompt:
    """One prompt.  ``text`` is the raw user text (no chat template applied)."""

    category: str
    text: str
    source: str
    id: str = ""
    license: str = ""
    subcategory: str = ""
    reference: str | None = None  # webtext: the true continuation; code: the canonical solution
    turns: tuple[str, ...] = field(default=())  # chat: all user turns (MT-Bench has two)


def _canonical(category: str) -> str:
    c = category.strip().lower()
    c = _ALIASES.get(c, c)
    if c not in CATEGORIES:
        raise ValueError(f"unknown prompt category {category!r}; choose from {', '.join(CATEGORIES)}")
    return c


@lru_cache(maxsize=None)
def _load_category(category: str) -> tuple[Prompt, ...]:
    res = importlib.resources.files("multidraft").joinpath("data", "prompts", f"{category}.jsonl")
    rows = []
    for line in res.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        rows.append(
            Prompt(
                category=r["category"],
                text=r["text"],
                source=r["source"],
                id=r.get("id", ""),
                license=r.get("license", ""),
                subcategory=r.get("subcategory", ""),
                reference=r.get("reference"),
                turns=tuple(r.get("turns", ())),
            )
        )
    return tuple(rows)


def load_prompts(category: str | None = None, limit: int | None = None) -> list[Prompt]:
    """Prompts of one category (or all, in the order of :data:`CATEGORIES`).

    ``limit`` keeps the first ``limit`` prompts *of each category*; the order is fixed.
    Accepted aliases: ``news`` -> summarization, ``web``/``owt`` -> webtext, ``mt_bench`` -> chat,
    ``humaneval``/``python`` -> code.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    cats = CATEGORIES if category is None else (_canonical(category),)
    out: list[Prompt] = []
    for c in cats:
        rows = _load_category(c)
        out.extend(rows if limit is None else rows[:limit])
    return out


def prompt_counts() -> dict[str, int]:
    return {c: len(_load_category(c)) for c in CATEGORIES}
