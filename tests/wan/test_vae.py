"""Streaming Wan VAE decode and encode against diffusers' whole-clip `decode` / `encode` (tiny random VAE)."""

from __future__ import annotations

import pytest
import torch

from context_forcing.wan.vae import WanVAECodec, WanVAEError, check_diffusers_version, to_uint8

from .conftest import tiny_vae


@pytest.fixture(scope="module")
def codec() -> WanVAECodec:
    return WanVAECodec(tiny_vae())


def random_latents(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 4, 4, 4, generator=g)  # (B, F, C, h, w): 32x32 pixels


@pytest.mark.parametrize("chunks", [[3, 3, 3], [1, 2], [3, 2], [1, 1, 1, 1, 1]])
def test_streaming_decode_equals_full_decode(codec, chunks) -> None:
    """Chunk by chunk through the causal cache == one diffusers decode, bit for bit (0.0 difference)."""
    latents = random_latents(sum(chunks), batch=2)
    with torch.no_grad():
        full = codec.vae.decode(codec.denormalize(latents).transpose(1, 2)).sample  # (B, C, T, H, W)
    stream = codec.stream_decoder()
    parts, start = [], 0
    for i, size in enumerate(chunks):
        part = stream.decode_float(latents[:, start : start + size])
        assert part.shape[2] == (4 * size - 3 if i == 0 else 4 * size)  # 1 frame for the first latent, then 4
        parts.append(part)
        start += size
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape[2] == 1 + 4 * (sum(chunks) - 1)
    assert full.abs().max() > 0.01  # a non-trivial picture
    assert torch.equal(streamed, full)


def test_decode_frames_and_uint8(codec) -> None:
    latents = random_latents(6)
    pixels = codec.decode(latents)
    assert pixels.shape == (1, 21, 32, 32, 3) and pixels.dtype == torch.uint8
    stream = codec.stream_decoder()
    chunked = torch.cat([stream.decode(latents[:, :3]), stream.decode(latents[:, 3:])], dim=1)
    assert chunked.shape[1] == 9 + 12  # 9 + 12 k frames for chunks of 3 latents
    assert torch.equal(chunked, pixels)


def test_naive_per_chunk_public_decode_differs(codec) -> None:
    """The pitfall the stream avoids: public decode per chunk restarts the cache (fewer, different frames)."""
    latents = random_latents(6)
    with torch.no_grad():
        naive = torch.cat(
            [
                codec.vae.decode(codec.denormalize(latents[:, i : i + 3]).transpose(1, 2)).sample
                for i in (0, 3)
            ],
            dim=2,
        )
    streamed = codec.stream_decoder().decode_float(latents)
    assert naive.shape[2] == 18 and streamed.shape[2] == 21


def test_streaming_encode_equals_full_encode_and_normalises(codec) -> None:
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (2, 13, 32, 32, 3), generator=g, dtype=torch.uint8)
    x = pixels.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    with torch.no_grad():
        mu = codec.vae.encode(x).latent_dist.mean.transpose(1, 2)  # (B, F, C, h, w)
    expected = (mu - torch.tensor(codec.vae.config.latents_mean).view(1, 1, -1, 1, 1)) / torch.tensor(
        codec.vae.config.latents_std
    ).view(1, 1, -1, 1, 1)
    stream = codec.stream_encoder()
    streamed = torch.cat(
        [stream.encode(pixels[:, :5]), stream.encode(pixels[:, 5:9]), stream.encode(pixels[:, 9:])], dim=1
    )
    assert streamed.shape == (2, 4, 4, 4, 4)
    torch.testing.assert_close(streamed, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(codec.encode(pixels), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(codec.denormalize(codec.normalize(mu)), mu, atol=1e-6, rtol=1e-6)


def test_clear_errors_for_wrong_chunks_tiling_and_versions(codec) -> None:
    pixels = torch.zeros(1, 4, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(WanVAEError, match="first pixel chunk has 4 frames.*1 \\+ 4k frames"):
        codec.stream_encoder().encode(pixels)
    stream = codec.stream_encoder()
    stream.encode(pixels[:, :1])
    with pytest.raises(WanVAEError, match="later pixel chunk has 3 frames.*multiple of 4"):
        stream.encode(pixels[:, :3])
    decoder = codec.stream_decoder()
    decoder.decode_float(random_latents(1))
    with pytest.raises(WanVAEError, match="batch 2, this stream started with 1"):
        decoder.decode_float(random_latents(1, batch=2))
    vae = tiny_vae()
    vae.enable_tiling()
    with pytest.raises(WanVAEError, match="tiling enabled"):
        WanVAECodec(vae).stream_decoder()
    with pytest.raises(WanVAEError, match="diffusers 0.43.0: .* verified on diffusers 0.42.1"):
        check_diffusers_version("0.43.0")
    with pytest.raises(WanVAEError, match="float16 on CPU"):
        WanVAECodec(tiny_vae(), dtype=torch.float16)


def test_to_uint8_maps_range() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 4, 1, 1)
    assert to_uint8(x).flatten().tolist() == [0, 128, 255, 255]
