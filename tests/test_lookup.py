"""The continuation a copying draft proposes."""

from __future__ import annotations

import pytest
import torch

from multidraft.lookup import continuation


def test_the_latest_occurrence_of_the_longest_suffix_is_continued():
    seq = torch.tensor([5, 1, 2, 3, 9, 9, 1, 2, 3, 4, 6, 0, 2, 3])
    tokens, matched = continuation(seq, 4)
    assert matched == 2  # "2 3": "0 2 3" never occurred before
    assert tokens.tolist() == [4, 6, 0, 2]  # after the latest earlier "2 3" (positions 7-8), not the first


def test_a_three_token_match_beats_a_later_shorter_one():
    seq = torch.tensor([7, 1, 2, 3, 8, 8, 5, 2, 3, 6, 1, 2, 3])
    tokens, matched = continuation(seq, 2)
    assert matched == 3 and tokens.tolist() == [8, 8]


def test_the_continuation_stops_at_the_text_and_at_the_depth():
    seq = torch.tensor([4, 4, 4])  # "4 4" occurs ending at position 1: continued by the last token itself
    assert continuation(seq, 5)[0].tolist() == [4]
    assert continuation(torch.tensor([1, 2, 3, 1, 2, 3, 1]), 2)[0].tolist() == [2, 3]
    assert continuation(torch.tensor([1, 2, 3, 1]), 0)[0].tolist() == []


def test_no_earlier_occurrence_gives_nothing():
    for seq in (torch.tensor([1, 2, 3, 4]), torch.tensor([3]), torch.tensor([], dtype=torch.int64)):
        tokens, matched = continuation(seq, 4)
        assert tokens.numel() == 0 and matched == 0


@pytest.mark.parametrize("depth, longest", [(-1, 3), (2, 0)])
def test_bad_arguments_are_refused(depth, longest):
    with pytest.raises(ValueError, match="lookup needs"):
        continuation(torch.tensor([1, 2, 1]), depth, longest)
