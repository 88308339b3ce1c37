"""Fixtures shared by the tests: tiny model pairs and a one-thread scope."""

from __future__ import annotations

import pytest
import torch

from tests.support.models import tiny_llama


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one CPU thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair():
    """One-layer target and draft from different seeds (per-node total variation ~0.4): fast, for the statistics."""
    return tiny_llama(0), tiny_llama(1)
