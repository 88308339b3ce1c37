"""Every verifier is exactly lossless on whole trees: the exact oracle of ``oracle.py``.

For every verifier x scheme x tree shape that the verifier accepts, on tiny
context-dependent tables (V = 3, depth <= 3, degenerate pairs included:
zeros, one-hot, disjoint supports, near-one-hot, p = q), every drafted tree
is enumerated with its probability and every verification outcome with its
exact probability; the emitted sequence, continued by the target, must have
the target's law to 1e-12.  Every other combination must be refused by
``check`` with a message naming the verifier, the scheme and the tree.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from multidraft import schemes, verifiers
from multidraft.shapes import branching, check_shape, format_shape, parse_shape, shape_depth
from tests.support.oracle import drafted_trees, emitted_law, node_laws, table, target_law

TOLERANCE = 1e-12
VOCAB = 3
#: Uniform shapes, then per-node templates (levels separated by "/": nodes with no drafts, mixed counts).
SHAPES = [
    parse_shape(spec)
    for spec in (
        "1",
        "1,1",
        "1,1,1",
        "2",
        "3",
        "2,1",
        "1,2",
        "2,2",
        "3,1",
        "2,1,1",
        "2/1,0",
        "2/0,2",
        "3/1,0,1",
        "1/1/1",
        "2/1,1/1,0",
    )
]
#: The LP scheme is slow; it is checked on the smallest trees only.
SMALL = {"otm": [parse_shape("2"), parse_shape("1,1")]}


def fits_scheme(name: str, shape) -> bool:
    try:
        check_shape(shape, schemes.get(name))
    except ValueError:
        return False
    return True


def accepts(verifier: str, name: str, shape) -> bool:
    try:
        verifiers.get(verifier).check(shape, schemes.get(name))
    except ValueError:
        return False
    return True


COMBINATIONS = [
    (verifier, name, shape)
    for verifier in verifiers.names()
    for name in schemes.names()
    for shape in SMALL.get(name, SHAPES)
    if fits_scheme(name, shape)
]
SUPPORTED = [c for c in COMBINATIONS if accepts(*c)]
REFUSED = [c for c in COMBINATIONS if not accepts(*c)]


def label(combination) -> str:
    verifier, name, shape = combination
    return f"{verifier}-{name}-{format_shape(shape)}"


@pytest.mark.parametrize("combination", SUPPORTED, ids=label)
def test_emitted_sequence_has_the_target_law(combination):
    verifier, name, shape = combination
    for seed in range(2):  # one table of mixed degenerate pairs, seeded per combination
        depth = shape_depth(shape)
        pairs = table(VOCAB, depth, seed=zlib.crc32(label(combination).encode()) % 1000 + 7919 * seed)
        law, _ = emitted_law(pairs, verifiers.get(verifier), schemes.get(name), shape, depth, VOCAB)
        error = np.abs(law - target_law(pairs, depth + 1, VOCAB)).max()
        assert error <= TOLERANCE, (seed, error)


def test_the_expected_combinations_are_supported_and_refused():
    supported = {(v, n) for v, n, s in SUPPORTED if max(k for _, k in branching(s)) > 1}
    chains = {(v, n) for v, n, s in SUPPORTED if max(k for _, k in branching(s)) == 1}
    assert {("token", n) for n in schemes.names()} <= supported | chains
    assert {(v, n) for v, n in supported if v == "traversal"} == {("traversal", n) for n in ("rrs", "kseq", "otm")}
    assert {n for v, n in supported if v == "traversal-seq"} == set(schemes.names()) - {"sps"}
    assert not any(v == "block" for v, _ in supported)
    assert {n for v, n in chains if v == "block"} == {"sps", "rrs", "rrs-wor", "kseq", "greedy", "topk", "otm"}
    assert ("traversal", "topk") not in chains and ("traversal-seq", "topk") in chains
    assert not any(v == "match" for v, _ in supported)
    assert {n for v, n in chains if v == "match"} == {"topk"}


@pytest.mark.parametrize("combination", REFUSED, ids=label)
def test_unsupported_combinations_are_refused_with_a_clear_message(combination):
    verifier, name, shape = combination
    with pytest.raises(ValueError) as error:
        verifiers.get(verifier).check(shape, schemes.get(name))
    message = str(error.value)
    assert f"verifier {verifier!r}" in message and f"scheme {name!r}" in message and "tree" in message


def test_verify_refuses_a_built_tree_it_cannot_verify():
    pairs = table(VOCAB, 2, seed=0)
    tree, contexts, _ = next(drafted_trees(pairs, "iid", parse_shape("2,1")))
    p, q = node_laws(pairs, tree, contexts)
    for verifier, name in [("block", "rrs"), ("traversal", "rrs-wor")]:
        with pytest.raises(ValueError, match=f"verifier {verifier!r}"):
            verifiers.get(verifier).verify(tree, schemes.get(name), p, q, None)
