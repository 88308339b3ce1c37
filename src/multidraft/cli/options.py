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
        help="the draft's linear layers: int8 (dynamic quantisation, the default) or float32; "
        "the output stays exactly the target's either way",
    )
    parser.add_argument(
        "--draft-vocab",
        type=int,
        default=None,
        help="keep only the first N token ids in the draft's output layer (q = 0 elsewhere)",
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
