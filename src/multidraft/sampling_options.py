"""Logits -> probabilities: temperature, top-k, top-p, applied identically to target and draft.

Speculative decoding is lossless for the *processed* target law p, so the
same processing must produce q from the draft logits; :func:`probabilities`
is the one place where that happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def check_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """``ValueError`` unless temperature >= 0, top_k >= 1 (or None), 0 < top_p <= 1 (or None)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number, got {temperature!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must lie in (0, 1] or be None, got {top_p!r}")


def probabilities(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The sampling law [..., V] from ``logits`` [..., V], in float32 (float64 if the logits are).

    * temperature T = 0: greedy, the one-hot vector of argmax(logits) (first index among ties);
    * otherwise z = logits / T, then
    * top-k: keep the tokens with z >= the k-th largest z (ties at the threshold are kept);
    * top-p (nucleus): sort the survivors by probability descending and keep the shortest prefix whose
      mass reaches top_p, i.e. drop token j iff the mass strictly before it is already >= top_p
      (the most likely token is always kept);
    * p = softmax(z) over the kept tokens (dropped tokens get probability exactly 0).
    """
    check_options(temperature, top_k, top_p)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    vocab = logits.shape[-1]
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), vocab).to(logits.dtype)
    z = logits / temperature
    if top_k is not None and top_k < vocab:
        threshold = z.topk(top_k, dim=-1).values[..., -1:]  # [..., 1]
        z = z.masked_fill(z < threshold, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_z, order = z.sort(dim=-1, descending=True)  # [..., V]
        sorted_p = sorted_z.softmax(-1)
        mass_before = sorted_p.cumsum(-1) - sorted_p  # [..., V]
        drop = torch.zeros_like(mass_before, dtype=torch.bool).scatter(-1, order, mass_before >= top_p)
        z = z.masked_fill(drop, -math.inf)
    return z.softmax(-1)


@dataclass(frozen=True)
class Sampling:
    """The processing applied to every logits row, and where / in which dtype the laws live."""

    temperature: float
    top_k: int | None
    top_p: float | None
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def for_runners(cls, temperature: float, top_k, top_p, target, draft=None) -> Sampling:
        """Laws on the target's device, in the widest of float32 and the models' dtypes (runners or models)."""
        dtype = torch.float32
        for model in (target, draft):
            if model is not None:
                dtype = torch.promote_types(dtype, getattr(model, "dtype", torch.float32))
        return cls(temperature, top_k, top_p, target.device, dtype)

    def laws(self, logits: torch.Tensor) -> torch.Tensor:
        """Processed law [..., V] of raw logits [..., V] on the sampling device."""
        return probabilities(logits.to(self.device, self.dtype), self.temperature, self.top_k, self.top_p)
