"""The seam between the decoder and an inference engine: a :class:`Runner` is one model and its KV cache.

The decoder never calls a model directly.  It asks a runner to read query
tokens after what its cache already holds and to return their logits, and,
after verification, to keep only the accepted path.  Everything a tree step
needs is expressed through three facts per query token:

* ``tokens`` [Q]: the token ids;
* ``positions`` [Q]: the position of each token (a tree node sits at the
  root's position plus its depth, so siblings share a position);
* ``visible`` [Q, cached + Q] bool: which cache entries and which queries of
  the same call each query attends to (the committed prefix, then its
  ancestors, itself included).

After a call the Q entries are appended to the cache in query order, so
cache offset ``cached + i`` holds query i.  :meth:`Runner.keep_path` keeps the
first ``length`` entries followed by the entries at the given offsets (moved
down behind them) and drops the rest; that is how the rejected branches of a
tree leave the cache.

Losslessness is always with respect to the target *as its runner computes
it*: the verifier makes the output follow the law of the logits the target
runner returns, whichever engine computes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Runner(Protocol):
    """One model behind the decoder (see the module docstring)."""

    #: A short name of the engine, e.g. ``"torch"`` or ``"llama.cpp"``.
    engine: str
    #: Logits per row (the output layer's size).
    vocab_size: int
    #: Where the returned logits live; sampling runs on the target's device.
    device: torch.device

    def cached(self) -> int:
        """Entries in the cache."""

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor, keep: int) -> torch.Tensor:
        """Read ``tokens`` [Q] at ``positions`` [Q] with ``visible`` [Q, cached + Q]; logits [keep, V] of the last
        ``keep`` queries (float32 or wider), on :attr:`device`.  The queries are appended to the cache."""

    def keep_path(self, length: int, path: Sequence[int]) -> None:
        """Keep entries [0, length) then the entries at offsets ``path`` (increasing, >= length); drop the rest."""

    def reset(self) -> None:
        """Empty the cache (a new generation)."""

    def check(self, role: str, total_length: int) -> None:
        """``ValueError`` naming ``role`` unless this runner can decode trees over ``total_length`` positions."""


def causal_visibility(past: int, n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """bool [n, past + n]: n consecutive tokens after ``past`` cached ones, each seeing itself and before."""
    return torch.ones(n, past + n, dtype=torch.bool, device=device).tril(past)


def read_as_decoder(runner: Runner, sequence: torch.Tensor, prompt_length: int, back: int = 0) -> torch.Tensor:
    """Logits [back + len(sequence) - prompt_length, V] at positions prompt_length - 1 - back .. end - 1 of
    ``sequence`` [L], read as the decoder reads a draft: the prompt in one forward (its last ``back`` + 1 rows
    kept, as the decoder's first step keeps them to look back), then one token per forward with the cache.

    (A dynamically quantised model scales each forward's activations by their own range, so a whole-text
    forward gives other logits than the decoder's forwards of a few tokens.)
    """
    runner.reset()
    rows = [
        runner.forward(
            sequence[:prompt_length], torch.arange(prompt_length), causal_visibility(0, prompt_length), back + 1
        )
    ]
    for position in range(prompt_length, len(sequence) - 1):
        rows.append(
            runner.forward(
                sequence[position : position + 1], torch.tensor([position]), causal_visibility(position, 1), 1
            )
        )
    return torch.cat(rows)


@contextlib.contextmanager
def host_threads(*runners: Runner | None) -> Iterator[None]:
    """PyTorch on one thread while no runner of ``runners`` is PyTorch's (e.g. llama.cpp runs both models).

    Then PyTorch only samples and verifies between the engine's forwards, a millisecond's work a step on
    vocabulary-sized rows; with more threads its idle OpenMP workers spin on the cores the engine's own
    threads compute on.  The previous thread count is restored on exit.
    """
    if any(runner is not None and runner.engine == "torch" for runner in runners):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
