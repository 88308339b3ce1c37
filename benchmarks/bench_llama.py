"""llama.cpp on the bundled GGUF pair, in one process: forward cost against rows, plain decoding, and p's divergence.

1. **Forward cost.**  Seconds of one :class:`~multidraft.runners.llama.LlamaRunner` forward over R tree
   nodes (R = 1, 2, 4, 8, 16; node i's parent is (i - 1) // 2; logits at every node) after a 120-token
   committed prefix, for the target and the draft GGUF as they are.  After one warm-up round, every
   repetition times every (R, model) once, R ascending then descending and the model order alternating,
   so that load changes hit all alike; medians over the repetitions.
2. **Plain decoding.**  Tokens per second of plain sampling (T = 1, full vocabulary) of the target:
   llama-cpp-python's high-level ``Llama.generate`` as its users run it, and multidraft's
   ``autoregressive`` on the :class:`LlamaRunner`, interleaved prompt by prompt (order alternating).
   Timed from the first generated token to the last (prompt processing excluded).
3. **Divergence of p.**  Per position of the prompt's continuation (the llama.cpp target's own samples,
   T = 1), KL(p_torch || p_llama) and KL(p_llama || p_torch) in nats, total variation and top-1
   agreement between multidraft's float32 PyTorch path (the GGUF de-quantised,
   :mod:`multidraft.models`) and llama.cpp running the GGUF, at T = 1; means per prompt, then over
   prompts with a t interval (clustered by prompt).

    nice .venv/bin/python benchmarks/bench_llama.py            # all three parts, 2 threads
    nice .venv/bin/python benchmarks/bench_llama.py --parts kl --prompts 8

Writes ``benchmarks/results/llama_forward.json``, ``llama_plain.json``, ``llama_kl.json`` (each as soon
as its part ends) and ``llama.md``; every file records the command, commit, date, machine, threads and
load averages (1, 5, 15 minutes) before and after.  Needs the ``llama`` extra and the bundled pair.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from multidraft import models
from multidraft.bench.inputs import encode, pick_prompts
from multidraft.decoding import autoregressive
from multidraft.runners import TorchRunner
from multidraft.runners.base import causal_visibility
from multidraft.runners.llama import LlamaRunner

RESULTS = Path(__file__).parent / "results"
ROWS = (1, 2, 4, 8, 16)
PREFIX = 120


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()


#: The commit of the code this process runs, read at start (later commits do not change loaded modules), with "+"
#: if tracked files differed from it.
COMMIT = _git("rev-parse", "HEAD") + ("+" if _git("status", "--porcelain", "--untracked-files=no") else "")


def provenance(threads: int) -> dict:
    import llama_cpp

    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": COMMIT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "llama_cpp_python": llama_cpp.__version__,
        "threads": threads,
        "load_average_before": list(os.getloadavg()),
    }


def save(name: str, report: dict) -> None:
    report["load_average_after"] = list(os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {RESULTS / name}", flush=True)


def tree_call(rows: int, committed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """visible [rows, committed + rows] and positions of a binary tree of ``rows`` nodes (parent (i - 1) // 2)."""
    visible = torch.zeros(rows, committed + rows, dtype=torch.bool)
    visible[:, :committed] = True
    depth = [0] * rows
    for node in range(rows):
        ancestor = node
        while ancestor > 0:
            visible[node, committed + ancestor] = True
            ancestor = (ancestor - 1) // 2
        visible[node, committed] = True
        depth[node] = 0 if node == 0 else depth[(node - 1) // 2] + 1
    return visible, committed + torch.tensor(depth)


def forward_cost(runners: dict[str, LlamaRunner], prefix: torch.Tensor, repeats: int) -> dict:
    """Median seconds per (model, rows) of a tree forward after the committed ``prefix`` (module docstring)."""
    for runner in runners.values():
        runner.reset()
        runner.forward(prefix, torch.arange(len(prefix)), causal_visibility(0, len(prefix)), 1)
        runner.keep_path(len(prefix), [])
    generator = torch.Generator().manual_seed(0)
    times: dict[tuple[str, int], list[float]] = {}
    names = list(runners)
    for repeat in range(repeats + 1):
        for rows in ROWS if repeat % 2 == 0 else ROWS[::-1]:
            visible, positions = tree_call(rows, len(prefix))
            for name in names if (repeat + rows) % 2 == 0 else names[::-1]:
                tokens = torch.randint(0, 150000, (rows,), generator=generator)
                start = time.perf_counter()
                runners[name].forward(tokens, positions, visible, rows)
                elapsed = time.perf_counter() - start
                runners[name].keep_path(len(prefix), [])
                if repeat > 0:
                    times.setdefault((name, rows), []).append(elapsed)
        print(f"forward repeat {repeat}/{repeats}", flush=True)
    return {
        f"{name} {rows}": {"rows": rows, "model": name, "median_seconds": float(np.median(t)), "seconds": t}
        for (name, rows), t in sorted(times.items())
    }


def plain_decoding(path: Path, runner: LlamaRunner, prompts: list[torch.Tensor], tokens: int, threads: int) -> list:
    """Tokens/s of llama-cpp-python's Llama.generate and multidraft's autoregressive on ``runner``, interleaved."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=runner.context,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        seed=0,
        verbose=False,
    )
    rows = []

    def high_level(prompt: torch.Tensor, seed: int) -> list[float]:
        llm.set_seed(seed)
        stamps = []
        for _ in llm.generate(prompt.tolist(), top_k=0, top_p=1.0, min_p=0.0, temp=1.0, reset=True):
            stamps.append(time.perf_counter())
            if len(stamps) == tokens:
                break
        return stamps

    def ours(prompt: torch.Tensor, seed: int) -> list[float]:
        stamps = []
        autoregressive(
            runner,
            prompt,
            max_new_tokens=tokens,
            temperature=1.0,
            generator=torch.Generator().manual_seed(seed),
            on_tokens=lambda new: stamps.extend([time.perf_counter()] * len(new)),
        )
        return stamps

    high_level(prompts[0], 0)  # warm-up
    ours(prompts[0], 0)
    for number, prompt in enumerate(prompts):
        engines = [("llama-cpp-python Llama.generate", high_level), ("multidraft autoregressive, LlamaRunner", ours)]
        for name, run in engines if number % 2 == 0 else engines[::-1]:
            stamps = run(prompt, number)
            rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
            rows.append(
                {
                    "engine": name,
                    "prompt": number,
                    "prompt_tokens": len(prompt),
                    "tokens": len(stamps),
                    "tokens_per_second": rate,
                }
            )
            print(f"plain {name} prompt {number}: {rate:.2f} tokens/s", flush=True)
    llm.close()
    return rows


def divergence(path: Path, prompts: list[torch.Tensor], continuation: int, threads: int) -> list:
    """Per prompt: the positions' KL both ways, total variation and top-1 agreement (module docstring)."""
    runner = LlamaRunner(path, threads=threads, context=512)
    texts = []
    for number, prompt in enumerate(prompts):
        result = autoregressive(
            runner,
            prompt,
            max_new_tokens=continuation,
            temperature=1.0,
            generator=torch.Generator().manual_seed(100 + number),
        )
        texts.append(torch.cat([prompt, torch.tensor(result.tokens)]))
    llama_logits = []
    for text, prompt in zip(texts, prompts):
        runner.reset()
        rows = len(text) - len(prompt) + 1  # the positions that predict the continuation, and the next
        llama_logits.append(runner.forward(text, torch.arange(len(text)), causal_visibility(0, len(text)), rows))
    runner.close()
    wait_for_memory(8 << 30)  # the float32 target: 6.2 GB
    target = models.bundled_pair().target.load(dtype=torch.float32)
    torch_runner = TorchRunner(target)
    out = []
    for number, (text, theirs) in enumerate(zip(texts, llama_logits)):
        torch_runner.reset()
        with torch.no_grad():
            ours = torch_runner.forward(text, torch.arange(len(text)), causal_visibility(0, len(text)), len(theirs))
        log_p, log_q = torch.log_softmax(ours.double(), -1), torch.log_softmax(theirs.double(), -1)
        p, q = log_p.exp(), log_q.exp()
        kl_pq = (p * (log_p - log_q)).sum(-1)
        kl_qp = (q * (log_q - log_p)).sum(-1)
        tv = 0.5 * (p - q).abs().sum(-1)
        top1 = (ours.argmax(-1) == theirs.argmax(-1)).double()
        out.append(
            {
                "prompt": number,
                "positions": len(theirs),
                "kl_torch_llama": kl_pq.tolist(),
                "kl_llama_torch": kl_qp.tolist(),
                "total_variation": tv.tolist(),
                "top1_agreement": top1.tolist(),
            }
        )
        print(
            f"kl prompt {number}: KL(torch||llama) mean {kl_pq.mean():.4g} max {kl_pq.max():.4g}, "
            f"TV mean {tv.mean():.4g}, top-1 agreement {top1.mean():.3f}",
            flush=True,
        )
    return out


def wait_for_memory(needed: int, patience: float = 3600.0) -> None:
    """Wait (up to ``patience`` seconds) until the machine has ``needed`` bytes available: it is shared."""
    deadline = time.monotonic() + patience
    while True:
        with open("/proc/meminfo") as info:
            available = next(int(line.split()[1]) << 10 for line in info if line.startswith("MemAvailable:"))
        if available >= needed:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {available >> 20} MiB available, {needed >> 20} MiB needed: try later")
        print(f"waiting for memory: {available >> 20} MiB available, {needed >> 20} MiB needed", flush=True)
        time.sleep(60)


def clustered(values: list[float]) -> dict:
    """Mean over prompts of per-prompt means, with a 95% t interval (clustered by prompt)."""
    array = np.asarray(values)
    half = float(scipy.stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array)))
    return {
        "mean": float(array.mean()),
        "ci95": [float(array.mean()) - half, float(array.mean()) + half],
        "prompts": len(array),
    }


def markdown(forward: dict | None, plain: dict | None, kl: dict | None) -> str:
    lines = [
        "# llama.cpp on the bundled GGUF pair",
        "",
        "Written by `benchmarks/bench_llama.py`; the machine is shared, so absolute times depend on its load "
        "(load averages recorded beside each part).",
        "",
    ]
    for report in (forward, plain, kl):
        if report is not None:
            lines += [
                f"- `{report['command']}` at {report['commit'][:10]}, {report['date']}, {report['machine']}, "
                f"llama-cpp-python {report['llama_cpp_python']}, {report['threads']} threads, load average "
                f"{report['load_average_before'][0]:.1f} before, {report['load_average_after'][0]:.1f} after"
            ]
    if forward is not None:
        rows = forward["rows"]
        lines += [
            "",
            "## Forward over R tree nodes after a 120-token prefix (median seconds)",
            "",
            "| model | " + " | ".join(f"R = {r}" for r in ROWS) + " |",
            "|---" * (len(ROWS) + 1) + "|",
        ]
        for name in ("target", "draft"):
            cells = [f"{rows[f'{name} {r}']['median_seconds'] * 1000:.0f} ms" for r in ROWS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if plain is not None:
        lines += [
            "",
            f"## Plain sampling of the target, T = 1, {plain['tokens']} tokens per prompt",
            "",
            "| engine | tokens/s (mean over prompts, 95% interval) | prompts |",
            "|---|---|---|",
        ]
        for engine, summary in plain["summary"].items():
            lines.append(
                f"| {engine} | {summary['mean']:.2f} [{summary['ci95'][0]:.2f}, {summary['ci95'][1]:.2f}] "
                f"| {summary['prompts']} |"
            )
        rate = {(row["engine"], row["prompt"]): row["tokens_per_second"] for row in plain["runs"]}
        ours, theirs = "multidraft autoregressive, LlamaRunner", "llama-cpp-python Llama.generate"
        ratio = clustered([rate[ours, prompt] / rate[theirs, prompt] for _, prompt in rate if _ == ours])
        lines += [
            "",
            f"Paired by prompt, multidraft's rate over llama-cpp-python's: {ratio['mean']:.2f} "
            f"[{ratio['ci95'][0]:.2f}, {ratio['ci95'][1]:.2f}] (mean of per-prompt ratios, 95% interval).",
        ]
    if kl is not None:
        lines += [
            "",
            "## p of the float32 PyTorch path against llama.cpp, bundled target, T = 1",
            "",
            "| measure (per position) | mean over prompts | 95% interval |",
            "|---|---|---|",
        ]
        for measure, summary in kl["summary"].items():
            low, high = summary["ci95"]
            lines.append(f"| {measure} | {summary['mean']:.4g} | [{low:.4g}, {high:.4g}] |")
    return "\n".join(lines) + "\n"


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("forward", "plain", "kl"), default=["forward", "plain", "kl"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--continuation", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)  # torch only samples here; llama.cpp's threads get the cores
    pair = models.bundled_pair()
    paths = {"target": pair.target.gguf_path(), "draft": pair.draft.gguf_path()}
    tokenizer = pair.target.load_tokenizer()
    prompts = [encode(tokenizer, prompt, 96) for prompt in pick_prompts(args.prompts)]
    if "forward" in args.parts:
        report = provenance(args.threads)
        runners = {name: LlamaRunner(path, threads=args.threads, context=512) for name, path in paths.items()}
        prefix = torch.cat(prompts)[:PREFIX]
        report["rows"] = forward_cost(runners, prefix, args.repeats)
        for runner in runners.values():
            runner.close()
        save("llama_forward.json", report)
    if "plain" in args.parts:
        report = provenance(args.threads)
        runner = LlamaRunner(paths["target"], threads=args.threads, context=512)
        report["tokens"] = args.tokens
        report["runs"] = plain_decoding(paths["target"], runner, prompts, args.tokens, args.threads)
        runner.close()
        runs = report["runs"]
        report["summary"] = {
            engine: clustered([r["tokens_per_second"] for r in runs if r["engine"] == engine])
            for engine in dict.fromkeys(row["engine"] for row in runs)
        }
        save("llama_plain.json", report)
    if "kl" in args.parts:
        report = provenance(args.threads)
        report["continuation"] = args.continuation
        report["prompts"] = divergence(paths["target"], prompts, args.continuation, args.threads)
        report["summary"] = {
            name: clustered([float(np.mean(row[key])) for row in report["prompts"]])
            for name, key in (
                ("KL(p_torch || p_llama), nats", "kl_torch_llama"),
                ("KL(p_llama || p_torch), nats", "kl_llama_torch"),
                ("total variation", "total_variation"),
                ("top-1 agreement", "top1_agreement"),
            )
        }
        save("llama_kl.json", report)
    (RESULTS / "llama.md").write_text(
        markdown(load("llama_forward.json"), load("llama_plain.json"), load("llama_kl.json"))
    )
    print((RESULTS / "llama.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
