"""Damaged, truncated or incomplete model files are refused in one line naming the file, before any load."""

from __future__ import annotations

import json
import random
import shutil
import struct

import pytest
import torch

from multidraft.cli import main
from multidraft.models import DamagedModelFile, check_model, check_tokenizer, load_causal_lm, load_tokenizer
from multidraft.models.files import check_gguf
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_pair import save_tiny_pair


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    """The tiny GGUF's bytes and where its tensor data starts (the end of the padded header)."""
    from gguf import GGUFReader

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path)
    return path.read_bytes(), int(GGUFReader(path).data_offset)


@pytest.mark.parametrize("keep", [0, 3, 4, 16, 24, 100, "header", "half", -1])
def test_a_truncated_gguf_is_refused_naming_the_file(tmp_path, gguf_file, keep):
    data, header = gguf_file
    cut = data[: {"header": header - 1, "half": len(data) // 2, -1: len(data) - 1}.get(keep, keep)]
    path = tmp_path / "cut.gguf"
    path.write_bytes(cut)
    with pytest.raises(DamagedModelFile, match="cut.gguf: damaged GGUF file") as info:
        load_causal_lm(path)
    assert "\n" not in str(info.value)
    assert ("empty" if not cut else "cut-short") in str(info.value) or "not a GGUF" in str(info.value)


def test_a_file_of_gguf_magic_version_and_garbage_is_refused(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"garbage!")
    with pytest.raises(DamagedModelFile, match=r"ends at byte 16, inside its header"):
        check_model(path)


def test_a_gguf_whose_header_promises_more_than_the_file_holds(tmp_path, gguf_file):
    # the first dimension of the first tensor set to 2**20: its data now runs past the end of the file
    data, _ = gguf_file
    name = b"token_embd.weight"
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name) + 4  # past the name and n_dims
    flipped = bytearray(data)
    flipped[at : at + 8] = struct.pack("<Q", 2**20)
    path = tmp_path / "flipped.gguf"
    path.write_bytes(bytes(flipped))
    with pytest.raises(DamagedModelFile, match="tensor 'token_embd.weight' ends at byte"):
        load_causal_lm(path)


def test_bit_flips_in_a_gguf_header_raise_only_damaged_model_file(tmp_path, gguf_file):
    """Flipped bits anywhere in the header either leave a readable file or give our error -- never another."""
    data, header = gguf_file
    rng = random.Random(0)
    path = tmp_path / "flipped.gguf"
    refused = 0
    for _ in range(300):
        flipped = bytearray(data)
        flipped[rng.randrange(header)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        try:
            check_model(path)
        except DamagedModelFile:
            refused += 1
    assert refused > 0


def test_nested_metadata_arrays_are_stepped_over(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "nested.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_array("test.nested", [[1, 2], [3], ["a", "b"]])
    writer.add_tensor("t", np.ones(4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert check_gguf(path) == {"general.architecture", "test.nested"}
    data_start = int(gguf.GGUFReader(path).data_offset)
    path.write_bytes(path.read_bytes()[: data_start + 15])  # one byte short of the 16-byte tensor
    with pytest.raises(DamagedModelFile, match="tensor 't' ends at byte"):
        check_gguf(path)


def test_a_gguf_without_a_token_list_is_no_tokenizer(tmp_path):
    path = tmp_path / "notok.gguf"
    write_tiny_gguf(path, tokenizer=False)
    check_model(path)
    with pytest.raises(DamagedModelFile, match="holds no tokenizer"):
        load_tokenizer(path)


# -- Hugging Face folders ----------------------------------------------------------------------


@pytest.fixture()
def folder(tmp_path):
    target, _ = save_tiny_pair(tmp_path)
    return tmp_path / "target"


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -1])
def test_a_truncated_safetensors_file_is_refused(folder, keep):
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: keep if keep >= 0 else len(data) + keep])
    with pytest.raises(DamagedModelFile, match="model.safetensors: damaged safetensors file") as info:
        load_causal_lm(folder)
    assert "\n" not in str(info.value)


def test_a_bit_flipped_safetensors_header_is_refused(folder):
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8 + data[8:].index(b'"data_offsets"') - 1] ^= 0x04  # the quote before the key: invalid JSON
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedModelFile, match="damaged safetensors file: invalid JSON"):
        check_model(folder)


@pytest.mark.parametrize(
    "content,message",
    [(b"", "not valid JSON"), (b'{"vocab_size": ', "not valid JSON"), (b'{"vocab_size": 3}', "names no model_type")],
)
def test_a_damaged_config_is_refused(folder, content, message):
    (folder / "config.json").write_bytes(content)
    with pytest.raises(DamagedModelFile, match=f"config.json: {message}"):
        load_causal_lm(folder)


def test_a_folder_without_weights_is_refused(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(DamagedModelFile, match="holds config.json but no weights"):
        load_causal_lm(folder)


def test_a_sharded_folder_missing_a_shard_is_refused(folder):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(DamagedModelFile, match="lists the shard 'model-00002-of-00002.safetensors', which is missing"):
        load_causal_lm(folder)


def test_a_truncated_pytorch_bin_is_refused(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    torch.save({"w": torch.zeros(64)}, folder / "pytorch_model.bin")
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedModelFile, match="pytorch_model.bin: damaged PyTorch weights file"):
        check_model(folder)


def test_a_folder_without_a_tokenizer_is_refused(folder):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(DamagedModelFile, match="holds no tokenizer"):
        load_tokenizer(folder)


def test_a_truncated_tokenizer_json_is_refused(folder):
    data = (folder / "tokenizer.json").read_bytes()
    (folder / "tokenizer.json").write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedModelFile, match="tokenizer.json: not valid JSON"):
        check_tokenizer(folder)


def test_a_file_repaired_in_place_is_checked_again(folder):
    """A passed check is remembered per version of the file: a new version is checked anew."""
    check_model(folder)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-1])
    with pytest.raises(DamagedModelFile):
        check_model(folder)
    weights.write_bytes(good)
    check_model(folder)


# -- the command line ----------------------------------------------------------------------------


def _generate(capsys, target, draft) -> tuple[int, str]:
    code = main(["generate", "--target", str(target), "--draft", str(draft), "--max-new-tokens", "2", "the a"])
    return code, capsys.readouterr().err


def test_generate_on_a_damaged_gguf_prints_one_line_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"garbage!")
    code, err = _generate(capsys, bad, bad)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"multidraft generate: error: {bad}: damaged GGUF file")


def test_generate_on_a_truncated_safetensors_folder_prints_one_line_and_exits_2(folder, capsys):
    draft = folder.parent / "draft"
    weights = draft / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    code, err = _generate(capsys, folder, draft)
    assert code == 2 and err.count("\n") == 1
    assert f"{weights}: damaged safetensors file" in err


def test_generate_with_a_target_folder_without_a_tokenizer_prints_one_line_and_exits_2(folder, capsys):
    shutil.rmtree(folder.parent / "notok", ignore_errors=True)
    bare = folder.parent / "notok"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(folder / name, bare / name)
    code, err = _generate(capsys, bare, folder.parent / "draft")
    assert code == 2 and err.count("\n") == 1
    assert f"{bare}: holds no tokenizer" in err
