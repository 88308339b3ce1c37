"""Per-position target and draft distributions recorded on real text (``multidraft record``).

For each prompt the target samples a continuation (the text the decoder
would see); one forward of each model over prompt + continuation then gives
p and q at every generated position, processed with the recording's
temperature / top-k / top-p.  Each pair is stored truncated to the ``top_n``
tokens of largest p + q, in float64, with the probability of all other
tokens kept as a tail mass (so each stored row, tail included, sums to 1).

The analysis treats the tail as one extra token.  Merging tokens can only
raise an acceptance rate, by at most min(p_tail, q_tail) per position for
single-draft rates; the mean tail masses are reported beside every table.

File format: a compressed ``.npz`` with ``header`` (JSON: models, sampling
options, prompts, top_n, version), ``token_ids`` [P, N] int64, ``p``, ``q``
[P, N] float64, ``p_tail``, ``q_tail`` [P] float64, ``prompt_index`` [P].
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multidraft import __version__
from multidraft.decoding import autoregressive
from multidraft.sampling_options import check_options, probabilities


@dataclass
class Recording:
    """Recorded distributions; row i is one generated position."""

    header: dict
    token_ids: np.ndarray  # [P, N] int64
    p: np.ndarray  # [P, N] float64
    q: np.ndarray  # [P, N] float64
    p_tail: np.ndarray  # [P]
    q_tail: np.ndarray  # [P]
    prompt_index: np.ndarray  # [P] int64

    def __len__(self) -> int:
        return len(self.p)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(p, q) at position i over the top-N tokens plus one tail token: [N + 1] each."""
        return np.append(self.p[i], self.p_tail[i]), np.append(self.q[i], self.q_tail[i])

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            header=np.array(json.dumps(self.header)),
            token_ids=self.token_ids,
            p=self.p,
            q=self.q,
            p_tail=self.p_tail,
            q_tail=self.q_tail,
            prompt_index=self.prompt_index,
        )

    @classmethod
    def load(cls, path: Path) -> Recording:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recording {path} does not exist (make one with `multidraft record`)")
        with np.load(path, allow_pickle=False) as data:
            missing = {"header", "token_ids", "p", "q", "p_tail", "q_tail", "prompt_index"} - set(data.files)
            if missing:
                raise ValueError(f"{path} is not a multidraft recording (missing {', '.join(sorted(missing))})")
            return cls(
                header=json.loads(str(data["header"])),
                token_ids=data["token_ids"],
                p=data["p"],
                q=data["q"],
                p_tail=data["p_tail"],
                q_tail=data["q_tail"],
                prompt_index=data["prompt_index"],
            )


def truncate(p: torch.Tensor, q: torch.Tensor, top_n: int) -> tuple[torch.Tensor, ...]:
    """Keep the ``top_n`` tokens of largest p + q: [P, V] float64 -> ids, p, q [P, N], tails [P].

    The tails are sums of the dropped entries (not 1 - kept), free of cancellation.
    """
    n = min(top_n, p.shape[-1])
    ids = torch.topk(p + q, n, dim=-1).indices  # [P, N]
    p_top, q_top = p.gather(-1, ids), q.gather(-1, ids)
    p_tail = p.scatter(-1, ids, 0).sum(-1)
    q_tail = q.scatter(-1, ids, 0).sum(-1)
    return ids, p_top, q_top, p_tail, q_tail


@torch.no_grad()
def record(
    target,
    draft,
    prompts: Sequence[torch.Tensor],
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    new_tokens: int,
    top_n: int,
    seed: int,
    header: dict,
    progress: Callable[[int], None] | None = None,
) -> Recording:
    """Record p and q along target-sampled continuations of ``prompts`` (1-D token id tensors)."""
    check_options(temperature, top_k, top_p)
    if new_tokens < 1 or top_n < 1:
        raise ValueError(f"new_tokens and top_n must be >= 1, got {new_tokens} and {top_n}")
    generator = torch.Generator(device=target.device).manual_seed(seed)
    columns: dict[str, list] = {name: [] for name in ("ids", "p", "q", "p_tail", "q_tail", "prompt")}
    for index, prompt in enumerate(prompts):
        continuation = autoregressive(
            target, prompt, max_new_tokens=new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
        ).tokens
        sequence = torch.cat([prompt.cpu(), torch.tensor(continuation, dtype=prompt.dtype)]).unsqueeze(0)
        # logits at positions len(prompt) - 1 .. end - 1 predict the continuation tokens
        span = slice(len(prompt) - 1, sequence.shape[1] - 1)
        laws = []
        for model in (target, draft):
            logits = model(sequence.to(model.device)).logits[0, span].double().cpu()
            laws.append(probabilities(logits, temperature, top_k, top_p))
        ids, p_top, q_top, p_tail, q_tail = truncate(laws[0], laws[1], top_n)
        for name, value in zip(columns, (ids, p_top, q_top, p_tail, q_tail)):
            columns[name].append(value.numpy())
        columns["prompt"].append(np.full(len(ids), index))
        if progress is not None:
            progress(index)
    full_header = {
        **header,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "new_tokens": new_tokens,
        "top_n": top_n,
        "seed": seed,
        "multidraft_version": __version__,
    }
    return Recording(
        header=full_header,
        token_ids=np.concatenate(columns["ids"]),
        p=np.concatenate(columns["p"]),
        q=np.concatenate(columns["q"]),
        p_tail=np.concatenate(columns["p_tail"]),
        q_tail=np.concatenate(columns["q_tail"]),
        prompt_index=np.concatenate(columns["prompt"]),
    )
