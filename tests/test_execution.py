"""The execution path: prepacked linear layers give the same numbers, cheaper drafts are what they say."""

from __future__ import annotations

import pytest
import torch

from multidraft.execution import PackedLinear, prepare, prepare_draft, sub_vocabulary
from tests.support.models import tiny_llama


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 3, 8, 17, 300])
def test_packed_linear_is_the_linear_layer(bias, rows):
    torch.manual_seed(rows)
    linear = torch.nn.Linear(48, 80, bias=bias)
    packed = PackedLinear(linear)
    x = torch.randn(1, rows, 48)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), linear(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(packed(x[0].t().contiguous().t()), linear(x[0]), rtol=0, atol=1e-5)  # 2-D, strided
    assert packed.weight.shape == (80, 48) and (packed.bias is None) == (not bias)


def test_prepare_swaps_every_linear_once_and_keeps_the_laws():
    model = tiny_llama(0, vocab=16)
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = model(tokens).logits
        assert prepare(model) is model
        assert not any(type(m) is torch.nn.Linear for m in model.modules())
        swapped = [m for m in model.modules() if isinstance(m, PackedLinear)]
        prepare(model)  # idempotent: nothing swapped twice
        assert [m for m in model.modules() if isinstance(m, PackedLinear)] == swapped
        torch.testing.assert_close(model(tokens).logits, before, rtol=0, atol=1e-4)


def test_prepare_leaves_other_dtypes_alone():
    model = tiny_llama(0, vocab=16).to(torch.bfloat16)
    prepare(model)
    assert any(type(m) is torch.nn.Linear for m in model.modules())


def test_cheaper_drafts():
    draft = prepare_draft(tiny_llama(1, vocab=16), precision="int8", vocabulary=6, special_ids=[15])
    assert not any(type(m) is torch.nn.Linear for m in draft.modules())
    with torch.no_grad():
        logits = draft(torch.tensor([[1, 2, 3]])).logits[0, -1]
    kept = sub_vocabulary(6, 16, [15])
    assert kept.tolist() == [0, 1, 2, 3, 4, 5, 15]
    off = torch.ones(16, dtype=torch.bool).scatter(0, kept, False)
    assert bool(torch.isinf(logits[off]).all()) and bool(torch.isfinite(logits[kept]).all())
    with pytest.raises(ValueError, match="before the model is first prepared"):
        prepare_draft(draft)
    with pytest.raises(ValueError, match="unknown draft precision"):
        prepare_draft(tiny_llama(1), precision="int4")
