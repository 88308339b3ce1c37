"""Argument helpers shared by the sub-commands that run models."""

from __future__ import annotations

import argparse

from multidraft.sampling_options import check_options


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from multidraft.execution import DRAFT_PRECISIONS

    parser.add_argument(
        "--target", help="local Hugging Face folder or .gguf file of the target (default: the bundled pair)"
    )
    parser.add_argument(
        "--draft", help="local Hugging Face folder or .gguf file of the draft (default: the bundled pair)"
    )
    parser.add_argument(
        "--draft-precision",
        choices=DRAFT_PRECISIONS,
        default="int8",
        help="the draft's linear layers on the torch engine: int8 (dynamic quantisation, the default) or "
        "float32; the output stays exactly the target's either way",
    )
    parser.add_argument(
        "--draft-vocab",
        type=int,
        default=None,
        help="keep only the first N token ids in the draft's output layer (q = 0 elsewhere; torch engine)",
    )


def add_engine_arguments(parser: argparse.ArgumentParser, choices: tuple[str, ...], default: str) -> None:
    """``--engine`` and ``--threads``: which engine runs the models (see :mod:`multidraft.bench.inputs`)."""
    auto = "; auto: llama when both models are .gguf files and llama-cpp-python is installed"
    parser.add_argument(
        "--engine",
        choices=choices,
        default=default,
        help="torch: PyTorch (a .gguf file is de-quantised to float32); llama: each .gguf file as it is, on "
        f"llama.cpp (needs llama-cpp-python){auto if 'auto' in choices else ''} (default %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of each llama.cpp forward (default: every CPU); on the torch engine, torch's threads "
        "(default: torch's own choice)",
    )


def check_engine_options(engine: str, args: argparse.Namespace) -> None:
    """Refuse the options an engine does not take, before any model is loaded."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if engine == "llama" and args.draft_vocab is not None:
        raise ValueError(
            "--draft-vocab cuts the draft of the torch engine; on llama.cpp give a draft GGUF cut to a "
            "sub-vocabulary (multidraft.runners.subvocabulary.write_subvocabulary)"
        )


def add_sampling_arguments(parser: argparse.ArgumentParser, temperature: bool = True) -> None:
    if temperature:
        parser.add_argument("--temperature", type=float, default=1.0, help="0 means greedy decoding")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)


def number_list(text: str, kind=float) -> list:
    """``"0.6,1.0"`` -> [0.6, 1.0]; ``"2-8"`` -> [2, ..., 8] for integers."""
    try:
        if kind is int and "-" in text and "," not in text:
            low, high = (int(x) for x in text.split("-"))
            return list(range(low, high + 1))
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of numbers, got {text!r}") from None


def check_sampling(temperatures: list[float], top_k, top_p) -> None:
    for temperature in temperatures:
        check_options(temperature, top_k, top_p)
