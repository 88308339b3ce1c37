"""The runner seam's shared functions: PyTorch's threads while another engine computes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from multidraft.runners.base import host_threads


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_pytorch_runs_on_one_thread_while_only_another_engine_computes(two_threads):
    llama = SimpleNamespace(engine="llama.cpp")
    with host_threads(llama, None):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), host_threads(llama, llama):
        raise RuntimeError("the loop failed")
    assert torch.get_num_threads() == 2  # restored on the way out of a failure too


def test_a_pytorch_runner_keeps_pytorchs_threads(two_threads):
    with host_threads(SimpleNamespace(engine="llama.cpp"), SimpleNamespace(engine="torch")):
        assert torch.get_num_threads() == 2
