#!/usr/bin/env python3
"""Add each prompt's mean agreement on its last tokens to recordings made before ``multidraft record`` kept it.

    python scripts/add_prompt_agreement.py benchmarks/results/prior_T0.6.npz benchmarks/results/prior_T1.0.npz

For every recorded prompt (named in the header, taken from the bundled prompts at the header's offset and
encoded as ``multidraft record`` encodes them) the target reads the prompt in one forward, and the draft
reads it as the decoder's first step does; the mean of sum_y min(p, q) at its last
:data:`multidraft.planning.prior.PROMPT_POSITIONS` positions, with the recording's sampling options, is
stored as the recording's ``prompt_agreement`` (:mod:`multidraft.bench.recording`).  Causal attention
makes those rows the ones a forward over prompt and continuation gives, up to float rounding.  Only the
bundled pair's recordings are handled; the rest of each file is left as it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from multidraft.bench.inputs import encode, load_pair, pick_prompts
from multidraft.bench.recording import Recording
from multidraft.planning.prior import PROMPT_POSITIONS, mean_agreement
from multidraft.runners import as_runner, read_as_decoder
from multidraft.sampling_options import probabilities


@torch.no_grad()
def prompt_agreements(pair, header: dict) -> np.ndarray:
    """[prompts] the mean agreement on the last tokens of each prompt the recording names."""
    names = header["prompts"]
    prompts = pick_prompts(len(names), header["prompt_offset"])
    found = [f"{prompt.category}/{prompt.id}" for prompt in prompts]
    if found != names:
        raise ValueError("the recording's prompts are not the bundled prompts at its offset")
    options = header["temperature"], header["top_k"], header["top_p"]
    out = []
    for prompt in prompts:
        ids = encode(pair.tokenizer, prompt, header["max_prompt_tokens"])
        back = min(PROMPT_POSITIONS, len(ids) - 1)
        target_rows = pair.target(ids[None]).logits[0, len(ids) - 1 - back : len(ids) - 1]
        draft_rows = read_as_decoder(as_runner(pair.draft), ids, len(ids), back)[:back]
        p, q = (probabilities(rows.double(), *options) for rows in (target_rows, draft_rows))
        out.append(mean_agreement(p, q))
    return np.array(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recordings", nargs="+", type=Path)
    args = parser.parse_args()
    pair = load_pair(None, None)
    for path in args.recordings:
        recording = Recording.load(path)
        if recording.header.get("draft_option", {}).get("precision") != "int8":
            raise ValueError(f"{path}: the bundled pair's recordings use the int8 draft")
        recording.prompt_agreement = prompt_agreements(pair, recording.header)
        recording.save(path)
        print(path.name, np.round(recording.prompt_agreement, 3).tolist())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
