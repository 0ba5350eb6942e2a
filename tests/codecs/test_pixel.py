"""PixelCodec: exact round trip, streaming equals whole decode, clear errors, factory."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.codecs import PixelCodec, build_codec
from context_forcing.config import CodecConfig, ConfigError, VideoConfig


def random_pixels(seed: int, shape=(2, 5, 6, 7, 3)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def test_every_byte_value_round_trips_exactly():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16, 1).expand(1, 1, 16, 16, 3)
    codec = PixelCodec()
    torch.testing.assert_close(codec.decode(codec.encode(pixels)), pixels, rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 2), t=st.integers(1, 4),
       h=st.integers(1, 9), w=st.integers(1, 9))
def test_round_trip_is_exact(seed, b, t, h, w):
    pixels = random_pixels(seed, (b, t, h, w, 3))
    codec = PixelCodec()
    latents = codec.encode(pixels)
    assert latents.shape == (b, t, 3, h, w) and latents.dtype == torch.float32
    assert latents.min() >= -1 and latents.max() <= 1
    torch.testing.assert_close(codec.decode(latents), pixels, rtol=0, atol=0)


def test_encode_is_channels_first_scaled_to_unit_range():
    pixels = torch.tensor([0, 255, 51], dtype=torch.uint8).reshape(1, 1, 1, 1, 3)
    latents = PixelCodec().encode(pixels)
    expected = torch.tensor([-1.0, 1.0, 51 / 127.5 - 1])
    torch.testing.assert_close(latents.flatten(), expected, rtol=0, atol=1e-7)


def test_decode_rounds_and_clamps():
    values = torch.tensor([-3.0, 5.0, 0.0, 2 / 127.5 - 1 + 0.49 / 127.5])
    latents = values.reshape(1, 4, 1, 1, 1).expand(1, 4, 3, 1, 1)
    pixels = PixelCodec().decode(latents)[0, :, 0, 0, 0]
    assert pixels.tolist() == [0, 255, 128, 2]  # (0 + 1) * 127.5 = 127.5 rounds half to even -> 128


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_decode_accepts_other_float_dtypes(dtype):
    pixels = random_pixels(1)
    latents = PixelCodec().encode(pixels)
    decoded = PixelCodec().decode(latents.to(dtype))
    # Half precision spacing near 1 is 2**-10 (fp16) / 2**-7 (bf16): up to ~1 level off after * 127.5.
    atol = {torch.float16: 1, torch.bfloat16: 1, torch.float64: 0}[dtype]
    torch.testing.assert_close(decoded.int(), pixels.int(), rtol=0, atol=atol)


@pytest.mark.parametrize("chunk", [1, 3])
def test_streaming_decode_equals_whole_decode(chunk):
    codec = PixelCodec()
    g = torch.Generator().manual_seed(0)
    latents = torch.rand(2, 7, 3, 5, 4, generator=g) * 2.4 - 1.2  # some values outside [-1, 1] to clamp
    stream = codec.stream_decoder()
    parts = [stream.decode(latents[:, i:i + chunk]) for i in range(0, latents.shape[1], chunk)]
    torch.testing.assert_close(torch.cat(parts, dim=1), codec.decode(latents), rtol=0, atol=0)
    assert stream.frames_decoded == 7


def test_stream_rejects_a_chunk_of_another_geometry():
    stream = PixelCodec().stream_decoder()
    stream.decode(torch.zeros(1, 3, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, h, w\) = \(1, 3, 4, 5\).*started with \(1, 3, 4, 4\)"):
        stream.decode(torch.zeros(1, 3, 3, 4, 5))


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(1, 2, 4, 4, 3), r"pixels must have dtype torch.uint8, got torch.float32"),
    (torch.zeros(2, 4, 4, 3, dtype=torch.uint8),
     r"pixels must have shape \(B, T, H, W, 3\), got \(2, 4, 4, 3\)"),
    (torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8), r"pixels must have shape .* got \(1, 2, 3, 4, 4\)"),
    ([[0]], r"pixels must be a torch.Tensor"),
])
def test_encode_errors_name_argument_and_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        PixelCodec().encode(bad)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8),
     r"latents must have a floating dtype .* got torch.uint8"),
    (torch.zeros(1, 2, 4, 4, 4), r"latents must have shape \(B, F, C=3, h, w\), got \(1, 2, 4, 4, 4\)"),
    (torch.zeros(2, 3, 4, 4), r"latents must have shape \(B, F, C=3, h, w\), got \(2, 3, 4, 4\)"),
    (torch.tensor([0.0, float("nan")]).reshape(1, 1, 1, 1, 2).expand(1, 1, 3, 1, 2),
     r"latents contain 3 non-finite values"),
])
def test_decode_errors_name_argument_and_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        PixelCodec().decode(bad)
    with pytest.raises(ValueError, match=message):
        PixelCodec().stream_decoder().decode(bad)


def test_build_codec_pixel():
    codec = build_codec(CodecConfig(kind="pixel"), VideoConfig())
    assert isinstance(codec, PixelCodec)
    assert (codec.latent_channels, codec.pixel_frames_per_latent, codec.spatial_downsample) == (3, 1, 1)


def test_build_codec_rejects_inconsistent_pixel_configs():
    with pytest.raises(ConfigError, match=r"video.pixel_frames_per_latent must be 1 .* got 4"):
        build_codec(CodecConfig(kind="pixel"), VideoConfig(pixel_frames_per_latent=4))
    with pytest.raises(ConfigError, match=r"codec.weights must be None"):
        build_codec(CodecConfig(kind="pixel", weights="/some/dir"), VideoConfig())


def test_build_codec_wan_vae_needs_a_local_folder():
    with pytest.raises(ConfigError, match="codec.weights must name a local Wan2.1 VAE folder"):
        build_codec(CodecConfig(kind="wan-vae"), VideoConfig(pixel_frames_per_latent=4))
