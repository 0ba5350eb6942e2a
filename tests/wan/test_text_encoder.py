"""umT5 prompts: Wan's padding and zeroing to 512 tokens, the on-disk cache, and the missing-extra error."""

from __future__ import annotations

import sys

import pytest
import torch

from context_forcing.wan.text_encoder import WAN_TEXT_LEN, UMT5PromptEncoder, clean_prompt, require


@pytest.fixture(scope="module")
def encoder_dirs(wan_root):
    return wan_root / "text_encoder", wan_root / "tokenizer"


def test_embeddings_are_padded_to_512_and_zeroed(encoder_dirs) -> None:
    from transformers import AutoTokenizer, UMT5EncoderModel

    encoder = UMT5PromptEncoder(*encoder_dirs)
    prompts = ["a red fox runs through the snowy forest", "a cat"]
    embeds = encoder.encode(prompts)
    assert embeds.shape == (2, WAN_TEXT_LEN, 32) and embeds.dtype == torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dirs[1]))
    model = UMT5EncoderModel.from_pretrained(str(encoder_dirs[0])).eval()
    for row, prompt in zip(embeds, prompts):
        ids = tokenizer(prompt).input_ids  # real tokens including </s>
        assert ids[-1] == 1
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        # real rows equal the unpadded encoding (padding does not leak in through the mask) ...
        torch.testing.assert_close(row[: len(ids)], alone, atol=1e-5, rtol=1e-5)
        assert row[: len(ids)].abs().min(dim=-1).values.max() > 0
        assert torch.all(row[len(ids) :] == 0)  # ... and every row past the prompt is exactly zero


def test_cache_hits_skip_the_encoder(encoder_dirs, tmp_path) -> None:
    encoder = UMT5PromptEncoder(*encoder_dirs, cache_dir=tmp_path)
    first = encoder.encode(["a boat sails", "a cat sleeps"])
    assert encoder.encoder_calls == 2 and len(list(tmp_path.glob("*.safetensors"))) == 2
    again = UMT5PromptEncoder(*encoder_dirs, cache_dir=tmp_path)  # a new process: only the disk cache
    mixed = again.encode(["a cat  sleeps", "a child flies a kite"])  # same cleaned text hits the cache
    assert again.encoder_calls == 1
    assert torch.equal(mixed[0], first[1])
    assert again._model is not None
    again.offload()
    assert again._model is None
    assert torch.equal(again.encode(["a boat sails"])[0], first[0]) and again.encoder_calls == 1
    assert encoder.cache_key("x") != UMT5PromptEncoder(*encoder_dirs, dtype=torch.bfloat16).cache_key("x")


def test_clean_prompt() -> None:
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"
    with pytest.raises(ValueError, match="non-empty list of strings"):
        UMT5PromptEncoder.__new__(UMT5PromptEncoder).encode("a single string")


def test_missing_extra_names_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` raise ImportError
    with pytest.raises(ImportError, match=r"needs 'transformers'.*pip install 'context-forcing\[wan\]'"):
        require("transformers")
