"""Prompt picking for the benchmarks and recordings: round-robin over the categories, an offset per category."""

from __future__ import annotations

import pytest

from multidraft.bench.inputs import pick_prompts
from multidraft.prompts import CATEGORIES, load_prompts, prompt_counts


def test_round_robin_over_every_category_in_fixed_order():
    picked = pick_prompts(2 * len(CATEGORIES) + 1)
    assert [p.category for p in picked] == [*CATEGORIES, *CATEGORIES, CATEGORIES[0]]
    assert picked[: len(CATEGORIES)] == [load_prompts(c)[0] for c in CATEGORIES]
    assert picked[len(CATEGORIES) : -1] == [load_prompts(c)[1] for c in CATEGORIES]
    assert pick_prompts(3) == picked[:3]


def test_offset_skips_the_first_prompts_of_each_category():
    picked = pick_prompts(2 * len(CATEGORIES), offset=40)
    assert picked == [load_prompts(c)[40 + i] for i in range(2) for c in CATEGORIES]
    assert not set(p.id for p in picked) & set(p.id for p in pick_prompts(40 * len(CATEGORIES)))


def test_shorter_categories_drop_out_and_everything_is_used_once():
    counts = prompt_counts()
    every = pick_prompts(sum(counts.values()))
    assert len({p.id for p in every}) == len(every)
    shortest = min(counts.values())
    tail = every[shortest * len(CATEGORIES) :]  # after the shortest category ran out
    assert min(counts, key=counts.get) not in {p.category for p in tail}


@pytest.mark.parametrize(
    "count,offset,message",
    [(0, 0, ">= 1"), (1, -1, "offset must be >= 0"), (10_000, 0, "only"), (1, 10_000, "only 0 are left")],
)
def test_bad_counts_and_offsets(count, offset, message):
    with pytest.raises(ValueError, match=message):
        pick_prompts(count, offset)
