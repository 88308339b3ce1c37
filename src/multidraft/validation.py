"""Input checks shared by the schemes, the theory and the CLI.

Every check raises ``ValueError`` with a message naming the problem, before
any expensive work.  Nothing is silently renormalised.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: A probability row must sum to 1 within this (float64); lower precisions get
#: a bound that grows with the rounding error of their own summation.
SUM_TOLERANCE = 1e-6


def sum_tolerance(dtype_eps: float, vocab_size: int) -> float:
    """Tolerance on ``|sum(row) - 1|``: 1e-6, or more where the dtype cannot do better."""
    return max(SUM_TOLERANCE, 4.0 * dtype_eps * math.sqrt(vocab_size))


def check_k(k: int, scheme: str, min_k: int = 1, max_k: int | None = None) -> None:
    """``k`` must be an int in ``[min_k, max_k]``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer number of drafts, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k < min_k or (max_k is not None and k > max_k):
        allowed = f"k = {min_k}" if max_k == min_k else f"{min_k} <= k" + (f" <= {max_k}" if max_k else "")
        raise ValueError(f"scheme {scheme!r} requires {allowed}, got k = {k}")


def _describe_rows(bad: torch.Tensor | np.ndarray) -> str:
    index = np.argwhere(np.asarray(bad))
    return "" if index.size == 0 else f" (first at row {tuple(int(i) for i in index[0])})"


def check_distribution(x: torch.Tensor, name: str) -> None:
    """``x`` [..., V]: floating point, finite, non-negative, rows summing to 1."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [..., V] with V >= 1, got {tuple(x.shape)}")
    smallest = x.amin()
    if not bool(smallest >= 0):  # also catches NaN
        what = "NaN" if bool(torch.isnan(x).any()) else "negative"
        raise ValueError(f"{name} has {what} entries; probabilities must be finite and >= 0")
    totals = x.sum(-1)  # +inf entries make a total of inf: caught below
    tol = sum_tolerance(torch.finfo(x.dtype).eps, x.shape[-1])
    bad = (totals - 1).abs() > tol
    if bool(bad.any()):
        worst = float(totals[bad].flatten()[0])
        raise ValueError(
            f"{name} rows must sum to 1 within {tol:g}; a row sums to {worst!r}{_describe_rows(bad.cpu())} "
            "(multidraft does not renormalise silently)"
        )


def check_pair(p: torch.Tensor, q: torch.Tensor, names: str = "p, q") -> None:
    """``p`` and ``q`` are probability tensors of one shape, dtype and device."""
    if p is q:
        check_distribution(q, names)
        return
    name_p, name_q = (n.strip() for n in names.split(","))
    check_distribution(p, name_p)
    check_distribution(q, name_q)
    if p.shape != q.shape:
        raise ValueError(f"{name_p} and {name_q} must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    if p.dtype != q.dtype or p.device != q.device:
        raise ValueError(
            f"{name_p} and {name_q} must share dtype and device, got {p.dtype}/{p.device} and {q.dtype}/{q.device}"
        )


def check_drafts(drafts: torch.Tensor, q: torch.Tensor) -> None:
    """``drafts`` [..., k] int64 token ids in ``[0, V)`` for a ``q`` of shape [..., V]."""
    if not isinstance(drafts, torch.Tensor) or drafts.dtype != torch.int64:
        raise ValueError("drafts must be an int64 tensor of shape [..., k]")
    if drafts.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"drafts have batch shape {tuple(drafts.shape[:-1])} but q has {tuple(q.shape[:-1])}")
    if drafts.numel() and (bool(drafts.min() < 0) or bool(drafts.max() >= q.shape[-1])):
        raise ValueError(f"draft token ids must lie in [0, {q.shape[-1]})")


def as_distribution(x, name: str) -> np.ndarray:
    """A 1-D float64 numpy probability vector, checked like :func:`check_distribution`."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one distribution (1-D), got shape {arr.shape}")
    check_distribution(torch.from_numpy(arr), name)
    return arr


def as_pair(p, q) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D float64 probability vectors of the same length."""
    p_arr, q_arr = as_distribution(p, "p"), as_distribution(q, "q")
    if p_arr.shape != q_arr.shape:
        raise ValueError(f"p and q must have the same length, got {p_arr.size} and {q_arr.size}")
    return p_arr, q_arr
