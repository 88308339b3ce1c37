"""``multidraft bench``: token-level and end-to-end benchmarks on real models and prompts.

* ``bench tokens``    -- exact acceptance vs alpha* on recorded distributions;
* ``bench generate``  -- tokens/s, speedup and block efficiency of real generation, interleaved,
  resumable (``--resume``), with a Hugging Face assisted-generation row;
* ``bench paired``    -- schemes compared at the same contexts (exact expected tokens per step);
* ``bench all``       -- the short main job (``make demo``): committed results, a live generation, a small run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from multidraft.bench.tables import differences_markdown, generate_markdown, paired_markdown, token_markdown
from multidraft.cli.options import (
    add_engine_arguments,
    add_model_arguments,
    add_sampling_arguments,
    check_engine_options,
    check_sampling,
    number_list,
)
from multidraft.prompts import CATEGORIES

DEFAULT_OUT = Path("benchmarks/results")


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="token-level and end-to-end benchmarks")
    commands = parser.add_subparsers(dest="bench_command", required=True)

    tokens = commands.add_parser("tokens", help="acceptance vs alpha* on recorded distributions")
    tokens.add_argument("recordings", nargs="+", type=Path, help=".npz files from `multidraft record`")
    tokens.add_argument("--k", default="2-8", help="draft counts, e.g. 2-8 or 2,4,8")
    tokens.add_argument(
        "--mc-draws", type=int, default=64, help="Monte-Carlo draws per position where no exact form is affordable"
    )
    tokens.add_argument("--out", type=Path, default=DEFAULT_OUT)
    tokens.set_defaults(run=run_tokens)

    generate = commands.add_parser("generate", help="end-to-end generation benchmark (resumable)")
    add_model_arguments(generate)
    add_engine_arguments(generate, ("torch", "llama"), "torch")
    _add_run_arguments(generate, prompts=8, new_tokens=64)
    generate.add_argument(
        "--configs",
        help="configurations separated by spaces or ';': autoregressive, auto[:slow-down] (the online planner; "
        "with its profile's forwards slowed by the factor), auto-static[:slow-down] (its first plan, kept), "
        "hf:γ|default (Hugging Face assisted generation "
        "on separately loaded models), hf-same:γ|default (on the models multidraft runs), "
        "llama-plain (llama-cpp-python's Llama sampling the target GGUF), torch-plain (autoregressive on the "
        "float32 PyTorch target), "
        "scheme:tree[:verifier] (e.g. 'autoregressive auto hf-same:default sps:1x4 rrs-wor:3/2,1,0:token'); "
        "default: autoregressive, sps chains and binary trees of depth 2-3 for rrs, rrs-wor, spechub",
    )
    generate.add_argument("--full", action="store_true", help="the full grid of schemes and trees (hours on a CPU)")
    generate.add_argument("--name", default="generate", help="results file stem under --out (NAME.jsonl, NAME.md)")
    generate.set_defaults(run=run_generate)

    paired = commands.add_parser("paired", help="schemes compared at the same contexts (resumable)")
    add_model_arguments(paired)
    add_engine_arguments(paired, ("torch", "llama"), "torch")
    _add_run_arguments(paired, prompts=12, new_tokens=64)
    paired.add_argument(
        "--schemes",
        default="spechub,rrs,rrs-wor",
        help="entries scheme[:verifier], comma-separated; the first is compared with each other",
    )
    paired.add_argument("--tree", default="2x3", help="a uniform tree; every smaller depth is measured too")
    paired.add_argument("--name", default="paired", help="results file stem under --out")
    paired.set_defaults(run=run_paired)

    predict = commands.add_parser("predict", help="predicted against measured tokens/s of a bench generate run")
    predict.add_argument("results", type=Path, help="the NAME.jsonl of a `bench generate` run")
    predict.add_argument("--profile", type=Path, default=DEFAULT_OUT / "profile.json", help="from `multidraft profile`")
    predict.add_argument(
        "--recordings",
        type=Path,
        nargs="+",
        required=True,
        help="`multidraft record` files, one per temperature of the run (acceptance by rank)",
    )
    predict.add_argument("--out", type=Path, help="OUT.json and OUT.md (default: NAME_prediction beside the results)")
    predict.set_defaults(run=run_predict)

    everything = commands.add_parser("all", help="the main job: committed results, a live generation, a small run")
    add_model_arguments(everything)
    add_sampling_arguments(everything, temperature=False)
    everything.add_argument("--out", type=Path, help="where the small run's results go (default: the cache folder)")
    everything.set_defaults(run=run_all)


def _add_run_arguments(parser: argparse.ArgumentParser, *, prompts: int, new_tokens: int) -> None:
    parser.add_argument("--temperatures", default="0.6,1.0")
    add_sampling_arguments(parser, temperature=False)
    parser.add_argument("--prompts", type=int, default=prompts, help="prompts, round-robin over the categories")
    parser.add_argument("--category", choices=CATEGORIES, help="prompts of this category only (default: all)")
    parser.add_argument("--new-tokens", type=int, default=new_tokens, help="tokens generated per prompt")
    parser.add_argument("--max-prompt-tokens", type=int, default=128, help="user-text tokens kept per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true", help="continue the results file of an interrupted run")


def _checked_run_arguments(args: argparse.Namespace) -> list[float]:
    temperatures = number_list(args.temperatures)
    if not temperatures:
        raise ValueError("--temperatures lists no temperature")
    check_sampling(temperatures, args.top_k, args.top_p)
    if args.prompts < 1 or args.new_tokens < 1 or args.max_prompt_tokens < 1:
        raise ValueError("--prompts, --new-tokens and --max-prompt-tokens must be >= 1")
    return temperatures


def _run_header(args: argparse.Namespace, temperatures, **extra) -> dict:
    """The parameters a results file is tied to: resuming with other ones is refused.

    The number of prompts is not among them: prompt i is always the same prompt
    with the same seed, so ``--resume --prompts N`` with a larger N extends a
    finished run (runs accumulate across invocations).
    """
    return {
        "temperatures": temperatures,
        "new_tokens": args.new_tokens,
        "max_prompt_tokens": args.max_prompt_tokens,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
        "target": args.target,
        "draft": args.draft,
        "draft_precision": args.draft_precision,
        "draft_vocab": args.draft_vocab,
        **({"category": args.category} if args.category else {}),
        **extra,
    }


def _encoded_prompts(pair, args) -> list:
    from multidraft.bench.inputs import encode, pick_prompts

    return [
        encode(pair.tokenizer, prompt, args.max_prompt_tokens)
        for prompt in pick_prompts(args.prompts, category=getattr(args, "category", None))
    ]


def _token_outputs(recordings, ks, mc_draws, out: Path) -> list[dict]:
    from tqdm import tqdm

    from multidraft.bench import report
    from multidraft.bench.tokens import DEFAULT_SCHEMES, applies, paired_gains, token_table

    rows = []
    for recording in recordings:
        temperature = recording.header.get("temperature")
        total = sum(1 for k in sorted({1, *ks}) for name in DEFAULT_SCHEMES if applies(name, k))
        with tqdm(total=total, desc=f"tokens T={temperature}", unit="row") as bar:
            table = token_table(recording, ks, mc_draws=mc_draws, progress=bar.update)
        tails = {"mean_p_tail": float(recording.p_tail.mean()), "mean_q_tail": float(recording.q_tail.mean())}
        rows += [{"temperature": temperature, **row, **tails} for row in table]
    gains = [{"temperature": r.header.get("temperature"), **gain} for r in recordings for gain in paired_gains(r)]
    report.write_json({"benchmark": "tokens", "rows": rows, "spechub_gains_k2": gains}, out / "tokens.json")
    report.write_csv(rows, out / "tokens.csv")
    gain_table = report.markdown_table(
        gains,
        [("temperature", "T"), ("comparison", "k = 2"), ("delta_acceptance", "Δ acceptance"), ("se", "paired s.e.")],
    )
    report.write_text(out / "tokens.md", token_markdown(rows) + "\n\n" + gain_table + "\n")
    for temperature in sorted({row["temperature"] for row in rows}):
        chosen = [row for row in rows if row["temperature"] == temperature]
        series, bounds = {}, {}
        for row in chosen:
            series.setdefault(row["scheme"], ([], []))
            series[row["scheme"]][0].append(row["k"])
            series[row["scheme"]][1].append(row["acceptance"])
        for row in chosen:
            if row["scheme"] == "rrs":
                bounds.setdefault("alpha* iid", ([], []))
                bounds["alpha* iid"][0].append(row["k"])
                bounds["alpha* iid"][1].append(row["optimal_own_law"])
                bounds.setdefault("best alpha*", ([], []))
                bounds["best alpha*"][0].append(row["k"])
                bounds["best alpha*"][1].append(row["best_optimal"])
        report.plot_lines(
            series,
            out / f"tokens_T{temperature}.png",
            title=f"Acceptance vs k (T = {temperature})",
            xlabel="drafts k",
            ylabel="acceptance rate",
            dashed=bounds,
        )
    return rows


def _comparisons(labels: list[str]) -> list[tuple[str, str]]:
    """spechub against rrs and rrs-wor at every tree run for all three; other verifiers against token."""
    pairs = []
    for label in labels:
        parts = label.split(" ")
        if parts[0] == "spechub" and len(parts) == 2:
            pairs += [(label, f"{other} {parts[1]}") for other in ("rrs", "rrs-wor") if f"{other} {parts[1]}" in labels]
        if len(parts) == 3 and f"{parts[0]} {parts[1]}" in labels:
            pairs.append((label, f"{parts[0]} {parts[1]}"))
    return pairs


def write_generate_report(store, out: Path, name: str) -> list[dict]:
    from multidraft.bench import report
    from multidraft.bench.generate import differences, summarise

    records = store.records()
    rows = summarise(records)
    gains = differences(records, _comparisons(list(dict.fromkeys(r["config"] for r in records))))
    report.write_json(
        {"benchmark": "generate", "header": store.header, "rows": rows, "differences": gains}, out / f"{name}.json"
    )
    report.write_text(out / f"{name}.md", generate_markdown(rows) + "\n\n" + differences_markdown(gains) + "\n")
    return rows


def run_tokens(args: argparse.Namespace) -> int:
    from multidraft.bench.recording import Recording

    ks = number_list(args.k, int)
    if not ks or min(ks) < 1:
        raise ValueError(f"--k must list draft counts >= 1, got {args.k!r}")
    recordings = [Recording.load(path) for path in args.recordings]
    _token_outputs(recordings, ks, args.mc_draws, args.out)
    print((args.out / "tokens.md").read_text())
    return 0


def run_generate(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from multidraft.bench import generate
    from multidraft.bench.inputs import (
        choose_engine,
        gguf_paths,
        llama_available,
        load_llama_plain,
        load_torch_target,
    )
    from multidraft.bench.store import ResultStore
    from multidraft.models import resolve_model_path

    # Everything is checked before a model is loaded.
    temperatures = _checked_run_arguments(args)
    configs = generate.parse_configs(args.configs) if args.configs else generate.default_configs(args.full)
    asked = {config.scheme for config in configs}
    engine = choose_engine(args.engine, args.target, args.draft)
    check_engine_options(engine, args)
    target_gguf = args.target is None or resolve_model_path(args.target)[0] == "gguf"
    generate.check_engine(configs, engine, target_gguf, llama_available())
    if generate.HF_ASSISTED in asked and engine == "llama" and args.target is not None:
        raise ValueError("hf:γ on --engine llama needs the bundled pair (Hugging Face loads folders, not .gguf files)")
    threads = args.threads or os.cpu_count() or 1
    llama_used = engine == "llama" or generate.LLAMA_PLAIN in asked
    extra = {"engine": engine} if engine != "torch" else {}  # torch runs keep the headers they always had
    header = _run_header(args, temperatures, configs=[c.label for c in configs], **extra)
    if llama_used:
        header["threads"] = threads
    store = ResultStore(
        args.out / f"{args.name}.jsonl", header, ("temperature", "config", "prompt"), resume=args.resume
    )
    context = _context(args)
    torch_threads = args.threads or torch.get_num_threads()
    pair = _load_engine_pair(engine, args, threads, context)
    hf_pair = None
    if generate.HF_ASSISTED in asked:
        from multidraft.bench.hf_assisted import load_hf_pair

        paths = pair.paths if engine == "torch" else _bundled_hf_paths()
        hf_pair = load_hf_pair(*paths)
    peers = {}
    if generate.TORCH_PLAIN in asked:
        peers[generate.TORCH_PLAIN] = pair.target if engine == "torch" else load_torch_target(args.target)
        peers[generate.TORCH_THREADS] = torch_threads
    if generate.LLAMA_PLAIN in asked:
        peers[generate.LLAMA_PLAIN] = load_llama_plain(gguf_paths(args.target, args.draft)[0], threads, context)
    prompts = _encoded_prompts(pair, args)
    generate.warm_up(pair, configs, prompts[0], hf_pair, peers)
    total = len(temperatures) * len(configs) * len(prompts)
    with tqdm(total=total, desc="generate", unit="run") as bar:
        generate.run(
            pair,
            prompts,
            store,
            configs=configs,
            temperatures=temperatures,
            new_tokens=args.new_tokens,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            hf_pair=hf_pair,
            peers=peers,
            progress=lambda label: (bar.set_postfix_str(label), bar.update()),
        )
    write_generate_report(store, args.out, args.name)
    print((args.out / f"{args.name}.md").read_text())
    return 0


def _context(args: argparse.Namespace) -> int:
    """KV cells of a run: the prompt (its user text cut to --max-prompt-tokens, plus a chat template), the
    tokens, a tree."""
    return args.max_prompt_tokens + 512 + args.new_tokens


def _load_engine_pair(engine: str, args: argparse.Namespace, threads: int, context: int):
    """The pair on its engine: both GGUF files on llama.cpp (PyTorch then only samples, on one thread, so that
    llama.cpp's threads get the cores), or the PyTorch pair with ``--threads`` as torch's threads."""
    import torch

    from multidraft.bench.inputs import load_llama_pair, load_pair

    if engine == "llama":
        torch.set_num_threads(1)
        return load_llama_pair(args.target, args.draft, threads=threads, context=context)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return load_pair(args.target, args.draft, draft_precision=args.draft_precision, draft_vocab=args.draft_vocab)


def _bundled_hf_paths() -> tuple:
    from multidraft.models import bundled_pair

    pair = bundled_pair()
    return pair.target.hf_path(), pair.draft.hf_path()


def run_paired(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from multidraft.bench import paired, report
    from multidraft.bench.inputs import choose_engine
    from multidraft.bench.store import ResultStore

    temperatures = _checked_run_arguments(args)
    names = [name.strip() for name in args.schemes.split(",") if name.strip()]
    paired.check_plan(names, args.tree)
    engine = choose_engine(args.engine, args.target, args.draft)
    check_engine_options(engine, args)
    threads = args.threads or os.cpu_count() or 1
    extra = {"engine": engine, "threads": threads} if engine != "torch" else {}  # torch runs keep their headers
    header = _run_header(args, temperatures, schemes=names, tree=args.tree, draft_randomness="common per step", **extra)
    store = ResultStore(args.out / f"{args.name}.jsonl", header, ("temperature", "prompt"), resume=args.resume)
    pair = _load_engine_pair(engine, args, threads, _context(args))
    prompts = _encoded_prompts(pair, args)
    with tqdm(total=len(temperatures) * len(prompts), desc="paired", unit="prompt") as bar:
        for temperature in temperatures:
            for index, prompt in enumerate(prompts):
                if not store.done((temperature, index)):
                    result = paired.paired_steps(
                        pair.target,
                        pair.draft,
                        prompt,
                        names=names,
                        tree=args.tree,
                        temperature=temperature,
                        new_tokens=args.new_tokens,
                        seed=args.seed + index,
                        top_k=args.top_k,
                        top_p=args.top_p,
                    )
                    store.append({"temperature": temperature, "prompt": index, **result})
                bar.update()
    rows, gains = paired.summarise(store.records(), names)
    report.write_json(
        {"benchmark": "paired", "header": store.header, "rows": rows, "differences": gains},
        args.out / f"{args.name}.json",
    )
    report.write_text(args.out / f"{args.name}.md", paired_markdown(rows, gains) + "\n")
    print((args.out / f"{args.name}.md").read_text())
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from multidraft.bench.prediction import prediction_rows
    from multidraft.bench.recording import Recording
    from multidraft.bench.report import markdown_table, write_json, write_text
    from multidraft.bench.store import read_lines
    from multidraft.planning.acceptance import rates_from_recording
    from multidraft.planning.profile import Profile

    if not args.results.is_file():
        raise FileNotFoundError(f"results file {args.results} does not exist")
    lines, _ = read_lines(args.results)
    header, records = lines[0]["header"], lines[1:]
    profile = Profile.load(args.profile)
    rates = {}
    for path in args.recordings:
        recording = Recording.load(path)
        rates[recording.header.get("temperature")] = rates_from_recording(recording)
    missing = sorted({r["temperature"] for r in records} - set(rates))
    if missing:
        raise ValueError(f"no recording at temperature {missing} among --recordings")
    rows = prediction_rows(records, profile, rates, header["new_tokens"])
    stem = args.out or args.results.with_suffix("").with_name(args.results.stem + "_prediction")
    write_json({"results": str(args.results), "profile": str(args.profile), "rows": rows}, Path(f"{stem}.json"))
    table = markdown_table(
        rows,
        [
            ("temperature", "T"),
            ("config", "configuration"),
            ("prompts", "prompts"),
            ("measured_tokens_per_second", "measured tokens/s"),
            ("predicted_tokens_per_second", "predicted tokens/s"),
            ("ratio", "measured / predicted"),
            ("predicted_with_measured_steps", "predicted, measured tokens/call"),
            ("ratio_with_measured_steps", "measured / that"),
            ("measured_speedup", "measured speedup"),
            ("predicted_speedup", "predicted speedup"),
            ("speedup_ratio", "measured / predicted speedup"),
        ],
    )
    write_text(Path(f"{stem}.md"), table + "\n")
    print(table)
    return 0


def run_all(args: argparse.Namespace) -> int:
    from multidraft.bench.demo import run_demo

    return run_demo(args)
