"""Loading models offline: tiny models written to a temporary folder, never a download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from multidraft import models
from multidraft.models import (
    MODEL_REQUIREMENTS,
    BundledModelsMissing,
    ModelSpec,
    bundled_pair,
    load_causal_lm,
    load_tokenizer,
    resolve_model_path,
)


def _tiny_qwen2(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    model = _tiny_qwen2()
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(folder)
    ids = torch.tensor([[1, 5, 9, 33, 2]])
    with torch.no_grad():
        ref = model(ids).logits
    return folder, ids, ref


def test_load_hf_folder_matches_saved_model(tiny_folder):
    folder, ids, ref = tiny_folder
    model = load_causal_lm(folder)
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        out = model(ids).logits
    assert torch.equal(out, ref)


def test_load_hf_folder_dtype(tiny_folder):
    folder, ids, ref = tiny_folder
    model = load_causal_lm(str(folder), dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with torch.no_grad():
        out = model(ids).logits
    assert torch.allclose(out.float(), ref, atol=1e-5)


def test_offline_environment_restored(tiny_folder, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    load_causal_lm(tiny_folder[0])
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_missing_path_is_file_not_found(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_causal_lm(missing)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_tokenizer(missing)


def test_resolve_model_path_rules(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="neither config.json nor a .gguf"):
        resolve_model_path(empty)

    one = tmp_path / "one"
    one.mkdir()
    (one / "m.gguf").write_bytes(b"")
    assert resolve_model_path(one) == ("gguf", one / "m.gguf")
    assert resolve_model_path(one / "m.gguf") == ("gguf", one / "m.gguf")

    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"")
    (two / "b.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="several .gguf"):
        resolve_model_path(two)

    other = tmp_path / "weights.bin"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="not a model"):
        resolve_model_path(other)


def _write_tiny_gguf(path: Path, vocab=32, hidden=16, layers=2, heads=4, kv=2, ff=32):
    import numpy as np

    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(hidden // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>".encode() for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([1] * vocab)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    hd = hidden // heads
    w.add_tensor("token_embd.weight", rand(vocab, hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("output.weight", rand(vocab, hidden))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", rand(hidden, hidden))
        w.add_tensor(f"blk.{i}.attn_k.weight", rand(kv * hd, hidden))
        w.add_tensor(f"blk.{i}.attn_v.weight", rand(kv * hd, hidden))
        w.add_tensor(f"blk.{i}.attn_output.weight", rand(hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", rand(ff, hidden))
        w.add_tensor(f"blk.{i}.ffn_up.weight", rand(ff, hidden))
        w.add_tensor(f"blk.{i}.ffn_down.weight", rand(hidden, ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_load_gguf_file_and_resave(tmp_path):
    pytest.importorskip("accelerate")
    folder = tmp_path / "g"
    folder.mkdir()
    _write_tiny_gguf(folder / "tiny.gguf")
    model = load_causal_lm(folder)  # the folder holds exactly one .gguf
    assert model.config.vocab_size == 32
    assert getattr(model.config, "quantization_config", None) is None
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        a = model(ids).logits
    # de-quantised GGUF models are plain dense models: they can be saved and reloaded
    model.save_pretrained(tmp_path / "hf")
    again = load_causal_lm(tmp_path / "hf")
    with torch.no_grad():
        b = again(ids).logits
    assert torch.equal(a, b)


def test_load_tokenizer_folder(tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tmodels
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "draft": 3}
    tk = Tokenizer(tmodels.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    tok = load_tokenizer(tmp_path / "tok")
    assert tok("hello draft world")["input_ids"] == [1, 3, 2]


# -- the bundled pair -----------------------------------------------------------------------


def test_bundled_pair_metadata_consistent():
    pair = bundled_pair(check=False)
    assert pair.licenses == ("Apache-2.0", "Apache-2.0")
    assert pair.vocab_size == 151_936
    for spec in (pair.target, pair.draft):
        assert len(spec.distributions) == len(spec.import_names) == len(spec.part_files)
        assert len(spec.gguf_sha256) == 64
    pinned = [line.split(" ")[0] for line in MODEL_REQUIREMENTS]
    assert pinned == list(pair.target.distributions + pair.draft.distributions)
    assert all("--hash=sha256:" in line for line in MODEL_REQUIREMENTS)


def test_missing_packages_give_setup_hint():
    fake = ModelSpec(
        key="fake",
        name="Fake model",
        upstream="nobody/fake",
        license="MIT",
        quantization="none",
        distributions=("multidraft-no-such-part1==0.0.0",),
        import_names=("multidraft_no_such_part1",),
        part_files=("data/part01.bin",),
        gguf_size=1,
        gguf_sha256="0" * 64,
        n_params=0,
        n_layers=0,
    )
    assert not fake.installed()
    with pytest.raises(BundledModelsMissing, match="multidraft-no-such-part1") as info:
        fake.part_paths()
    assert "set-up" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_bundled_pair_check(monkeypatch):
    pair = bundled_pair(check=False)
    if pair.target.installed() and pair.draft.installed():
        assert bundled_pair() is pair
        for spec in (pair.target, pair.draft):
            parts = spec.part_paths()
            assert sum(p.stat().st_size for p in parts) == spec.gguf_size
    # pretend one part is gone: a clear error naming it and the set-up command
    monkeypatch.setattr(
        models.ModelSpec, "missing_distributions", lambda self: list(self.distributions[:1])
    )
    with pytest.raises(BundledModelsMissing, match="set-up"):
        bundled_pair()


@pytest.mark.skipif(
    not os.environ.get("MULTIDRAFT_REAL_MODELS"),
    reason="set MULTIDRAFT_REAL_MODELS=1 to load the real bundled pair (minutes on first use)",
)
def test_real_bundled_pair_forward():
    from transformers import DynamicCache

    target, draft, tok = models.load_bundled_pair()
    assert target.config.vocab_size == draft.config.vocab_size == 151_936
    ids = tok("def fibonacci(n):", return_tensors="pt").input_ids
    with torch.no_grad():
        for m in (target, draft):
            cache = DynamicCache(config=m.config)
            out = m(ids, past_key_values=cache, use_cache=True)
            assert out.logits.shape == (1, ids.shape[1], 151_936)
            assert torch.isfinite(out.logits).all()
