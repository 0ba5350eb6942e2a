"""Tiny random Wan components (transformer, VAE, umT5 + a SentencePiece tokenizer trained here), no download.

Everything is fp32 on CPU and seeded. The tiny transformer has head_dim 32 (RoPE split 6/5/5) and patch
(1, 2, 2); the tiny VAE keeps `attn_scales=[]` (diffusers 0.42.1's encoder breaks with attention blocks when
called with a cache, reference/wan_path.md section 2.3).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from context_forcing.config import ModelConfig, TextConfig
from context_forcing.model.dit import CausalVideoDiT

TINY = ModelConfig(
    in_channels=4,
    out_channels=4,
    patch=(1, 2, 2),
    dim=64,
    heads=2,
    layers=2,
    ffn_dim=128,
    text_dim=32,
    freq_dim=256,
)
VAE_CONFIG = dict(
    base_dim=8,
    z_dim=4,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    latents_mean=[0.1, -0.2, 0.3, 0.0],
    latents_std=[1.5, 0.5, 2.0, 1.0],
)
SENTENCES = [
    "a red fox runs through the snowy forest",
    "a boat sails across a calm blue lake at dawn",
    "the camera pans over a busy city street at night",
    "a cat sleeps on a warm windowsill",
    "waves crash against the rocks under a grey sky",
    "a child flies a kite in the park",
]


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (zero-initialised heads too), so every weight reaches the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            std = p.shape[1] ** -0.5 if p.ndim == 2 else 0.3
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tiny_transformer(seed: int = 0, cfg: ModelConfig = TINY) -> CausalVideoDiT:
    return randomize_(CausalVideoDiT(cfg, TextConfig(kind="umt5")), seed).eval()


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(**VAE_CONFIG).eval()


def train_spiece(path: Path) -> Path:
    """A SentencePiece unigram model trained here on SENTENCES (pad 0, eos 1, unk 2 as umT5)."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4),
        model_writer=buffer,
        vocab_size=64,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path.mkdir(parents=True, exist_ok=True)
    (path / "spiece.model").write_bytes(buffer.getvalue())
    return path


def tiny_text_encoder(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Save a tiny tokenizer (tokenizer/) and a random UMT5EncoderModel (text_encoder/) under `directory`."""
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    spiece = train_spiece(directory / "spiece")
    tokenizer = T5Tokenizer.from_pretrained(str(spiece), extra_ids=0)
    tokenizer.save_pretrained(str(directory / "tokenizer"))
    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=max(64, len(tokenizer)),
        d_model=TINY.text_dim,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    UMT5EncoderModel(config).eval().save_pretrained(str(directory / "text_encoder"))
    return directory / "tokenizer", directory / "text_encoder"


@pytest.fixture(scope="session")
def wan_root(tmp_path_factory) -> Path:
    """A Wan2.1-Diffusers-style folder: transformer/, vae/, text_encoder/, tokenizer/ (tiny, random)."""
    from diffusers import WanTransformer3DModel

    from context_forcing.model.wan_adapter import diffusers_config, to_diffusers

    root = tmp_path_factory.mktemp("wan_root")
    wan = WanTransformer3DModel(**diffusers_config(TINY))
    wan.load_state_dict(to_diffusers(tiny_transformer().state_dict(), TINY), strict=True)
    wan.save_pretrained(str(root / "transformer"))
    tiny_vae().save_pretrained(str(root / "vae"))
    tiny_text_encoder(root)
    return root
