"""``multidraft profile`` and ``multidraft plan``: the measured cost model and the best tree for this machine.

``profile`` measures the forwards of both models against the query count and
the context, the per-step overheads and the roofline, and writes
``profile.json`` and ``profile.png`` (and the cache used by ``--scheme auto``).
``plan`` ranks every candidate (scheme, tree) by predicted tokens/s, from the
cached profile (measured first if missing) and acceptance by rank measured on
a recording (``--recording``, from ``multidraft record``; the rates then
replace the cached ones that ``--scheme auto`` uses) or on a short pilot
sample of the bundled prompts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from multidraft.cli.options import add_model_arguments, add_sampling_arguments


def register(subparsers) -> None:
    profile = subparsers.add_parser("profile", help="measure this machine's cost model for the model pair")
    add_model_arguments(profile)
    profile.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    profile.set_defaults(run=run_profile)

    plan = subparsers.add_parser("plan", help="rank (scheme, tree) candidates by predicted tokens/s")
    add_model_arguments(plan)
    add_sampling_arguments(plan)
    plan.add_argument("--recording", type=Path, help="a `multidraft record` file at the same sampling options")
    plan.add_argument("--prompt-tokens", type=int, default=150, help="prompt length the prediction assumes")
    plan.add_argument("--new-tokens", type=int, default=64, help="generation length the prediction assumes")
    plan.add_argument("--max-nodes", type=int, default=64)
    plan.add_argument("--top", type=int, default=3, help="choices shown per scheme")
    plan.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    plan.set_defaults(run=run_plan)


def _load(args):
    from multidraft.bench.inputs import load_pair

    return load_pair(args.target, args.draft, draft_precision=args.draft_precision, draft_vocab=args.draft_vocab)


def plot_profile(profile, path: Path) -> None:
    from multidraft.bench import report

    series, bounds = {}, {}
    for role in ("target", "draft"):
        for point in profile.roofline.get(role, {}).get("points", []):
            if point["queries"] > 64:
                continue
            label = f"{role}, context {point['context']}"
            x, y = series.setdefault(label, ([], []))
            x.append(point["queries"])
            y.append(1000 * point["measured_s"])
            x, y = bounds.setdefault(f"{label}: roofline", ([], []))
            x.append(point["queries"])
            y.append(1000 * point["roofline_s"])
    if not series:  # no roofline (another engine than torch)
        return
    report.plot_lines(
        series,
        path,
        title="Forward time against query tokens",
        xlabel="query tokens",
        ylabel="ms per forward",
        dashed=bounds,
    )


def profile_markdown(profile) -> str:
    from multidraft.bench.report import markdown_table

    rows = [
        {
            "role": role,
            **point,
            "measured_ms": 1000 * point["measured_s"],
            "roofline_ms": 1000 * point["roofline_s"],
            "ratio": point["measured_s"] / point["roofline_s"],
        }
        for role in ("target", "draft")
        for point in profile.roofline.get(role, {}).get("points", [])
    ]
    machine = profile.roofline
    if "read_bandwidth_bytes_per_s" not in machine:
        return "no roofline: it is measured for PyTorch models only\n"
    head = (
        f"read bandwidth {machine['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, prepacked float32 matmul "
        f"{machine['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s; "
        f"target weights {machine['target']['weight_bytes'] / 1e9:.2f} GB, "
        f"draft weights {machine['draft']['weight_bytes'] / 1e9:.2f} GB\n\n"
    )
    return head + markdown_table(
        rows,
        [
            ("role", "model"),
            ("context", "context"),
            ("queries", "queries"),
            ("measured_ms", "measured ms"),
            ("roofline_ms", "roofline ms"),
            ("ratio", "ratio"),
        ],
    )


def run_profile(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from multidraft import planning
    from multidraft.bench import report
    from multidraft.models.cache import write_entry

    pair = _load(args)
    profile = planning.measure(
        pair.target,
        pair.draft,
        planning.model_description(pair.target, pair.draft),
        progress=lambda message: print(f"profiling: {message}", flush=True),
    )
    write_entry(planning.profile_path(pair.target, pair.draft), asdict(profile))
    profile.save(args.out / "profile.json")
    plot_profile(profile, args.out / "profile.png")
    report.write_text(args.out / "profile.md", profile_markdown(profile) + "\n")
    print((args.out / "profile.md").read_text())
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from multidraft import planning
    from multidraft.bench import report
    from multidraft.bench.recording import Recording
    from multidraft.models.cache import write_entry
    from multidraft.planning.planner import best_per_scheme, plan, plan_rows
    from multidraft.planning.prior import Prior
    from multidraft.sampling_options import check_options

    check_options(args.temperature, args.top_k, args.top_p)
    if args.prompt_tokens < 1 or args.new_tokens < 1 or args.max_nodes < 2 or args.top < 1:
        raise ValueError("--prompt-tokens, --new-tokens, --top must be >= 1 and --max-nodes >= 2")
    recording = Recording.load(args.recording) if args.recording else None
    if recording is not None and recording.header.get("temperature") != args.temperature:
        raise ValueError(
            f"{args.recording} was recorded at T = {recording.header.get('temperature')}, "
            f"not at --temperature {args.temperature}"
        )
    pair = _load(args)
    profile = planning.cached_profile(pair.target, pair.draft, progress=lambda m: print(f"profiling: {m}", flush=True))
    if recording is not None:
        prior = Prior.from_recording(recording, source=str(args.recording))
        write_entry(
            planning.prior_path(pair.target, pair.draft, args.temperature, args.top_k, args.top_p), asdict(prior)
        )
    else:
        from multidraft.api import pilot_prior
        from multidraft.bench.inputs import encode, pick_prompts

        prompt = encode(pair.tokenizer, pick_prompts(1)[0], args.prompt_tokens)
        prior = planning.cached_prior(
            pair.target,
            pair.draft,
            args.temperature,
            args.top_k,
            args.top_p,
            lambda: pilot_prior(pair.target, pair.draft, prompt, args.temperature, args.top_k, args.top_p),
        )
    rates = prior.rates
    context = args.prompt_tokens + args.new_tokens / 2
    choices = plan(profile, rates, context=context, max_nodes=args.max_nodes)
    shown = []
    for best in best_per_scheme(choices):
        shown += [c for c in choices if c.scheme == best.scheme][: args.top]
    shown.sort(key=lambda c: -c.tokens_per_second)
    rows = plan_rows(profile, rates, shown, args.prompt_tokens, args.new_tokens)
    name = f"plan_T{args.temperature:g}"
    report.write_json(
        {
            "temperature": args.temperature,
            "positions": rates.positions,
            "rows": rows,
            "best": {"scheme": choices[0].scheme, "tree": choices[0].tree},
        },
        args.out / f"{name}.json",
    )
    table = report.markdown_table(
        rows,
        [
            ("scheme", "scheme"),
            ("tree", "tree"),
            ("tokens_per_step", "E tokens/call"),
            ("step_seconds", "s/step"),
            ("decode_tokens_per_second", "decode tokens/s"),
            ("tokens_per_second", "tokens/s (with prefill)"),
            ("speedup", "speedup"),
        ],
    )
    report.write_text(args.out / f"{name}.md", table + "\n")
    print(table)
    return 0
