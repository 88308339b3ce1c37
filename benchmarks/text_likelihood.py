"""Are the benchmark's texts drawn from one law?  Each text's log-likelihood under the target, ranked per prompt.

    python benchmarks/text_likelihood.py benchmarks/results/auto/repeats_{summarization,code,chat}.jsonl \\
        --out benchmarks/results/auto/repeats_loglik

Every configuration of a ``multidraft bench generate`` run (plain sampling, ``auto``, fixed trees,
Hugging Face assisted generation) is meant to sample the target's law at the run's temperature.  Then,
for one prompt and temperature, the log-likelihoods log p_T(y) = sum_t log p_T(y_t | x, y_<t) of the
configurations' texts under the target (its logits divided by T) are exchangeable, and each
configuration's rank among them is uniform: mean rank (n + 1) / 2 over n configurations.  A sampler
biased towards probable texts (towards the draft's or the greedy choice) ranks low.  The p-values
permute the labels within each (class, temperature, prompt) cell.  A fixed configuration counts as
"fixed" whatever its scheme, so classes with different fixed rows share one column.

One forward of the target per text (about 3 s each on the bundled pair on 2 cores); every result is
appended to ``OUT.jsonl`` at once, so a killed run resumes where it stopped.  Writes ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from multidraft.bench.report import markdown_table, write_text
from multidraft.bench.store import read_lines

PLAIN, AUTO = "autoregressive", "auto"
PERMUTATIONS = 4000


def column(config: str) -> str:
    """The configuration's column: itself, or "fixed" for a fixed multidraft configuration."""
    return config if config in (PLAIN, AUTO) or config.startswith("hf") else "fixed"


def text_log_likelihood(target, prompt: torch.Tensor, tokens: list[int], temperature: float) -> float:
    """log p_T(tokens | prompt), the target's logits divided by ``temperature``, in float64."""
    text = torch.tensor(tokens)
    with torch.no_grad():
        hidden = target.model(torch.cat([prompt, text])[None]).last_hidden_state[0, prompt.numel() - 1 : -1]
        logits = target.lm_head(hidden).double() / temperature  # [len(tokens), V]
    return float(torch.log_softmax(logits, -1).gather(1, text[:, None]).sum())


def measure(paths: list[Path], out: Path) -> None:
    """Append to ``out`` the log-likelihood of every text of the runs not already there."""
    from multidraft.bench.inputs import encode, load_pair, pick_prompts

    done = {tuple(json.loads(line)["key"]) for line in out.open()} if out.exists() else set()
    pair, prompts = None, {}
    with out.open("a") as sink:
        for path in paths:
            lines, _ = read_lines(path)
            header = lines[0]["header"]
            category = header["category"]
            for record in lines[1:]:
                key = [category, record["temperature"], record["prompt"], record["config"]]
                if tuple(key) in done:
                    continue
                if pair is None:
                    pair = load_pair(None, None)
                if category not in prompts:  # every prompt of the run, read once
                    count = 1 + max(line["prompt"] for line in lines[1:])
                    prompts[category] = pick_prompts(count, category=category)
                prompt = encode(pair.tokenizer, prompts[category][record["prompt"]], header["max_prompt_tokens"])
                loglik = text_log_likelihood(pair.target, prompt, record["tokens"], record["temperature"])
                sink.write(json.dumps({"key": key, "loglik": loglik}) + "\n")
                sink.flush()


def ranks(out: Path, seed: int = 0) -> list[dict]:
    """Per temperature (and all together), each column's mean rank (1 = the most likely text) and its
    one-sided permutation p-values, over the cells where every column has a text."""
    cells: dict = defaultdict(dict)
    for line in out.open():
        row = json.loads(line)
        category, temperature, prompt, config = row["key"]
        cells[(category, temperature, prompt)][column(config)] = row["loglik"]
    names = sorted({name for cell in cells.values() for name in cell})
    rng = np.random.default_rng(seed)
    rows = []
    for temperature in [*sorted({key[1] for key in cells}), "all"]:
        keys = [k for k, cell in cells.items() if len(cell) == len(names) and temperature in ("all", k[1])]
        if len(keys) < 8:
            continue
        values = np.array([[cells[k][name] for name in names] for k in keys])  # [cells, configs]
        observed = np.array([rankdata(-row) for row in values]).mean(0)  # [configs]
        shuffled = np.array(
            [np.array([rankdata(-rng.permutation(row)) for row in values]).mean(0) for _ in range(PERMUTATIONS)]
        )  # [PERMUTATIONS, configs]
        for i, name in enumerate(names):
            rows.append(
                {
                    "T": temperature if temperature == "all" else f"{temperature:g}",
                    "cells": len(keys),
                    "configuration": name,
                    "mean rank": f"{observed[i]:.2f}",
                    "exchangeable": f"{(len(names) + 1) / 2:.2f}",
                    "p (ranks this low)": f"{np.mean(shuffled[:, i] <= observed[i] + 1e-12):.3f}",
                    "p (this high)": f"{np.mean(shuffled[:, i] >= observed[i] - 1e-12):.3f}",
                    "median log-likelihood": f"{np.median(values[:, i]):.1f}",
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="multidraft bench generate results (.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="stem of OUT.jsonl and OUT.md")
    args = parser.parse_args()
    missing = [str(path) for path in args.results if not path.exists()]
    if missing:
        parser.error(f"no such results file: {', '.join(missing)}")
    jsonl, md = args.out.with_suffix(".jsonl"), args.out.with_suffix(".md")
    measure(args.results, jsonl)
    rows = ranks(jsonl)
    command = "python benchmarks/text_likelihood.py " + " ".join(map(str, args.results)) + f" --out {args.out}"
    table = markdown_table(rows, [(key, key) for key in rows[0]]) if rows else "fewer than 8 complete cells\n"
    write_text(md, f"# Texts' log-likelihoods under the target, ranked per prompt\n\n`{command}`\n\n{table}\n")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
