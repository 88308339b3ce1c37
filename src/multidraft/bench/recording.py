"""Per-position target and draft distributions recorded on real text (``multidraft record``).

For each prompt the target samples a continuation (the text the decoder
would see); p and q at every generated position then come from the models,
processed with the recording's temperature / top-k / top-p.  The target
reads prompt + continuation in one forward.  The draft reads them the way
the decoder reads it: the prompt in one forward, then one token per forward
with its cache.  This matters for the default int8 draft, whose dynamic
quantisation scales each forward's activations by their own range: a
forward over hundreds of tokens quantises each of them more coarsely than
the decoder's forwards of a few tokens do: single-draft acceptance on the
bundled pair was 0.615 read whole (the previous ``bench_execution.py``
results) and is 0.689 read as the decoder reads it (float32: 0.719).  Each pair is stored truncated to the ``top_n``
tokens of largest p + q, in float64, with the probability of all other
tokens kept as a tail mass (so each stored row, tail included, sums to 1).

The analysis treats the tail as one extra token.  Merging tokens can only
raise an acceptance rate, by at most min(p_tail, q_tail) per position for
single-draft rates; the mean tail masses are reported beside every table.

File format: a compressed ``.npz`` with ``header`` (JSON: models, sampling
options, prompts, top_n, version; ``multidraft record`` adds ``categories``,
the category of each prompt), ``token_ids`` [P, N] int64, ``p``, ``q``
[P, N] float64, ``p_tail``, ``q_tail`` [P] float64, ``prompt_index`` [P]
(the prompt each position belongs to, an index into those lists), and
``prompt_agreement`` [prompts] float64: each prompt's mean agreement
sum_y min(p, q) at its last :data:`~multidraft.planning.prior.PROMPT_POSITIONS`
positions, the draft reading the prompt in one forward as the decoder's first
step does (what :mod:`multidraft.planning.prior` conditions on; recordings made
before it was kept lack it).  It is written atomically (a temporary file renamed into place).

Resuming: prompt i is sampled with its own generator seeded ``seed + i`` (as
in ``bench generate``), so any subset of prompts gives the same rows as a
full run.  With a ``journal`` path, each prompt's rows are appended to a
:class:`~multidraft.bench.store.ResultStore` as soon as they are recorded;
``resume=True`` skips the prompts it holds, so a killed run continues where
it stopped and ends with exactly the rows of an uninterrupted one (float64
values round-trip exactly through JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multidraft import __version__
from multidraft.bench.store import ResultStore, replace_atomically
from multidraft.decoding import autoregressive
from multidraft.guards import check_finite
from multidraft.planning.acceptance import truncate
from multidraft.planning.prior import PROMPT_POSITIONS, mean_agreement
from multidraft.runners import as_runner, read_as_decoder
from multidraft.sampling_options import check_options, probabilities

#: The per-position arrays and their dtypes (how they read back from a journal).
COLUMNS = {
    "token_ids": np.int64,
    "p": np.float64,
    "q": np.float64,
    "p_tail": np.float64,
    "q_tail": np.float64,
    "prompt_index": np.int64,
}

#: Header entries that recordings joined into one (:meth:`Recording.join`) must share.
JOINED_ALIKE = (
    "target",
    "draft",
    "licences",
    "draft_option",
    "max_prompt_tokens",
    "draft_precision",
    "draft_vocab",
    "temperature",
    "top_k",
    "top_p",
    "top_n",
    "draft_read",
)


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
    prompt_agreement: np.ndarray | None = None  # [prompts] float64 (module docstring)

    def __len__(self) -> int:
        return len(self.p)

    def prompt_categories(self) -> list[str]:
        """The category of every prompt, in order.

        From the header's ``categories``; recordings made before it was stored name each prompt
        ``"category/id"`` in ``prompts``, and the category is read from there.
        """
        if "categories" in self.header:
            return [str(kind) for kind in self.header["categories"]]
        if "prompts" in self.header:
            return [name.split("/", 1)[0] for name in self.header["prompts"]]
        raise ValueError("this recording names no prompt categories (its header has no 'categories' or 'prompts')")

    def categories(self) -> np.ndarray:
        """The prompt category of every position: [P] str (:meth:`prompt_categories`)."""
        return np.asarray(self.prompt_categories(), dtype=str)[self.prompt_index]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(p, q) at position i over the top-N tokens plus one tail token: [N + 1] each."""
        return np.append(self.p[i], self.p_tail[i]), np.append(self.q[i], self.q_tail[i])

    def save(self, path: Path) -> None:
        """Write the ``.npz`` atomically: readers see the old file or the complete new one."""
        with replace_atomically(path) as temporary, open(temporary, "wb") as file:
            extra = {} if self.prompt_agreement is None else {"prompt_agreement": self.prompt_agreement}
            np.savez_compressed(
                file,
                header=np.array(json.dumps(self.header)),
                **{name: getattr(self, name) for name in COLUMNS},
                **extra,
            )

    @classmethod
    def join(cls, parts: Sequence[Recording]) -> Recording:
        """One recording holding the prompts of ``parts`` in order: their positions concatenated, each part's
        prompt indices shifted past the prompts before it.  The parts must have been recorded alike (the same
        models, draft option, sampling options and top N: :data:`JOINED_ALIKE`); they may differ in their
        prompts, offset, seed and number of new tokens, which the joined header keeps per part in ``parts``.
        """
        if not parts:
            raise ValueError("Recording.join needs at least one recording")
        first = parts[0].header
        for index, part in enumerate(parts[1:], 1):
            differing = [key for key in JOINED_ALIKE if part.header.get(key) != first.get(key)]
            if differing:
                raise ValueError(f"recording {index} differs from recording 0 in {', '.join(differing)}")
            if (part.prompt_agreement is None) != (parts[0].prompt_agreement is None):
                raise ValueError(f"recording {index} and recording 0 differ in whether they keep prompt_agreement")
        categories = [part.prompt_categories() for part in parts]
        counts = [len(kinds) for kinds in categories]
        shifts = np.cumsum([0, *counts[:-1]])
        header = {key: first[key] for key in JOINED_ALIKE if key in first}
        header["prompts"] = [name for part in parts for name in part.header.get("prompts", [])]
        header["categories"] = [kind for kinds in categories for kind in kinds]
        header["parts"] = [
            {key: part.header.get(key) for key in ("prompt_offset", "new_tokens", "seed", "multidraft_version")}
            | {"prompts": count}
            for part, count in zip(parts, counts)
        ]
        agreement = None if parts[0].prompt_agreement is None else np.concatenate([p.prompt_agreement for p in parts])
        columns = {name: np.concatenate([getattr(part, name) for part in parts]) for name in COLUMNS}
        columns["prompt_index"] = np.concatenate([part.prompt_index + shift for part, shift in zip(parts, shifts)])
        return cls(header=header, **columns, prompt_agreement=agreement)

    @classmethod
    def load(cls, path: Path) -> Recording:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recording {path} does not exist (make one with `multidraft record`)")
        with np.load(path, allow_pickle=False) as data:
            missing = {"header", *COLUMNS} - set(data.files)
            if missing:
                raise ValueError(f"{path} is not a multidraft recording (missing {', '.join(sorted(missing))})")
            prompt_agreement = data["prompt_agreement"] if "prompt_agreement" in data.files else None
            header = json.loads(str(data["header"]))
            return cls(header=header, **{name: data[name] for name in COLUMNS}, prompt_agreement=prompt_agreement)


@torch.no_grad()
def record_prompt(
    target,
    draft,
    prompt: torch.Tensor,
    index: int,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    new_tokens: int,
    top_n: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """The rows of prompt ``index`` (a 1-D token id tensor): a continuation sampled with seed ``seed + index``;
    and under ``"prompt_agreement"`` the prompt's mean agreement (module docstring)."""
    generator = torch.Generator(device=target.device).manual_seed(seed + index)
    continuation = autoregressive(
        target,
        prompt,
        max_new_tokens=new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
    ).tokens
    sequence = torch.cat([prompt.cpu(), torch.tensor(continuation, dtype=prompt.dtype)]).unsqueeze(0)
    # logits at positions len(prompt) - 1 .. end - 1 predict the continuation tokens; the `back` rows before
    # them, the last prompt tokens
    back = min(PROMPT_POSITIONS, len(prompt) - 1)
    span = slice(len(prompt) - 1 - back, sequence.shape[1] - 1)
    laws = []
    for role, logits in (
        ("target", target(sequence.to(target.device)).logits[0, span]),
        ("draft", read_as_decoder(as_runner(draft), sequence[0], len(prompt), back)),
    ):
        logits = logits.double().cpu()
        check_finite(logits, role, range(span.start, span.stop), at=f"prompt {index}")
        laws.append(probabilities(logits, temperature, top_k, top_p))
    ids, p_top, q_top, p_tail, q_tail = truncate(laws[0][back:], laws[1][back:], top_n)
    values = [value.numpy() for value in (ids, p_top, q_top, p_tail, q_tail)]
    rows = dict(zip(COLUMNS, [*values, np.full(len(ids), index)]))
    return {**rows, "prompt_agreement": mean_agreement(laws[0][:back], laws[1][:back])}


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
    journal: Path | None = None,
    resume: bool = False,
) -> Recording:
    """Record p and q along target-sampled continuations of ``prompts`` (1-D token id tensors).

    With ``journal``, prompts are kept in that results file as they finish and
    ``resume`` continues it (see module docstring); the file's header is the
    recording's header, so a resume with other parameters is refused.
    """
    check_options(temperature, top_k, top_p)
    if new_tokens < 1 or top_n < 1:
        raise ValueError(f"new_tokens and top_n must be >= 1, got {new_tokens} and {top_n}")
    full_header = {
        **header,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "new_tokens": new_tokens,
        "top_n": top_n,
        "seed": seed,
        "draft_read": "prompt, then one token per forward",
        "multidraft_version": __version__,
    }
    store = ResultStore(journal, full_header, ("prompt",), resume=resume) if journal is not None else None
    rows: dict[int, dict[str, np.ndarray]] = {}
    if store is not None:
        for stored in store.records():
            rows[stored["prompt"]] = {name: np.array(stored[name], dtype=dtype) for name, dtype in COLUMNS.items()}
            rows[stored["prompt"]]["prompt_agreement"] = stored.get("prompt_agreement", float("nan"))
    for index, prompt in enumerate(prompts):
        if index not in rows:
            rows[index] = record_prompt(
                target,
                draft,
                prompt,
                index,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                new_tokens=new_tokens,
                top_n=top_n,
                seed=seed,
            )
            if store is not None:
                columns = {name: rows[index][name].tolist() for name in COLUMNS}
                store.append({"prompt": index, **columns, "prompt_agreement": rows[index]["prompt_agreement"]})
        if progress is not None:
            progress(index)
    ordered = [rows[index] for index in range(len(prompts))]
    return Recording(
        header=full_header,
        **{name: np.concatenate([r[name] for r in ordered]) for name in COLUMNS},
        prompt_agreement=np.array([r["prompt_agreement"] for r in ordered], dtype=np.float64),
    )
