"""What reading the prompt's last rows costs ``scheme="auto"`` at a generation's first step.

The first step's forwards read the whole prompt in any case (the target's and the draft's); ``auto`` keeps the
logits of the prompt's last :data:`multidraft.planning.prior.PROMPT_POSITIONS` positions too, which adds that
many rows of each model's output layer.  For the first prompts of each class, each model's prompt forward keeping
one row and keeping 1 + PROMPT_POSITIONS rows is timed on fresh caches, interleaved, after a warm-up, with the
median over ``--repeats``:

    PYTHONPATH=src python benchmarks/prompt_rows_cost.py --prompts 8 --repeats 3

Writes benchmarks/results/auto/prompt_rows_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from multidraft.bench.inputs import encode, load_pair, pick_prompts
from multidraft.bench.store import replace_atomically
from multidraft.planning.prior import PROMPT_POSITIONS
from multidraft.runners import as_runner, causal_visibility

OUT = Path(__file__).resolve().parent / "results" / "auto"
CLASSES = ("chat", "code", "summarization")


@torch.no_grad()
def prompt_seconds(model, ids: torch.Tensor, keep: int) -> float:
    """Seconds of one forward over ``ids`` on a fresh cache, keeping the last ``keep`` rows of logits."""
    runner = as_runner(model)
    runner.reset()
    start = time.perf_counter()
    runner.forward(ids, torch.arange(len(ids)), causal_visibility(0, len(ids)), keep)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="prompts per class")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pair = load_pair(None, None)
    rows = []
    for model in (pair.target, pair.draft):  # warm-up
        prompt_seconds(model, encode(pair.tokenizer, pick_prompts(1, 0, "code")[0], 256), PROMPT_POSITIONS + 1)
    for category in CLASSES:
        for index, prompt in enumerate(pick_prompts(args.prompts, 0, category)):
            ids = encode(pair.tokenizer, prompt, 256)
            keep = min(PROMPT_POSITIONS, len(ids) - 1) + 1
            for role, model in (("target", pair.target), ("draft", pair.draft)):
                one, more = [], []
                for _ in range(args.repeats):  # interleaved
                    one.append(prompt_seconds(model, ids, 1))
                    more.append(prompt_seconds(model, ids, keep))
                rows.append(
                    {
                        "class": category,
                        "prompt": index,
                        "model": role,
                        "prompt_tokens": len(ids),
                        "rows_kept": keep,
                        "seconds_one_row": statistics.median(one),
                        "seconds_rows_kept": statistics.median(more),
                    }
                )
                print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = {
        "command": "python benchmarks/prompt_rows_cost.py " + f"--prompts {args.prompts} --repeats {args.repeats}",
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    with replace_atomically(OUT / "prompt_rows_cost.json") as path:
        Path(path).write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Reading the prompt's last rows at the first step",
        "",
        f"`{header['command']}` at {commit}, {header['date']}, {header['machine']}, load {header['load_average']:.2f}.",
        "",
        "| class | model | prompt tokens (mean) | one row, s | 1 + 32 rows, s | extra, s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for category in CLASSES:
        for role in ("target", "draft"):
            chosen = [r for r in rows if r["class"] == category and r["model"] == role]
            one = statistics.mean(r["seconds_one_row"] for r in chosen)
            more = statistics.mean(r["seconds_rows_kept"] for r in chosen)
            tokens = statistics.mean(r["prompt_tokens"] for r in chosen)
            lines.append(f"| {category} | {role} | {tokens:.0f} | {one:.3f} | {more:.3f} | {more - one:+.3f} |")
    with replace_atomically(OUT / "prompt_rows_cost.md") as path:
        Path(path).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
