"""Engines behind the decoder: one :class:`~multidraft.runners.base.Runner` per model.

:func:`as_runner` accepts a runner as it is and wraps a Hugging Face causal LM in a
:class:`~multidraft.runners.torch.TorchRunner`.
"""

from __future__ import annotations

from multidraft.runners.base import Runner, causal_visibility, read_as_decoder
from multidraft.runners.torch import TorchRunner, output_size

__all__ = ["Runner", "TorchRunner", "as_runner", "causal_visibility", "output_size", "read_as_decoder"]


def as_runner(model) -> Runner:
    """``model`` if it is a :class:`Runner`, else a fresh :class:`TorchRunner` around the Hugging Face model."""
    return model if isinstance(model, Runner) else TorchRunner(model)
