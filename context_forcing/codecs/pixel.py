"""The lossless pixel codec of the tiny presets: a latent frame is the RGB frame scaled to [-1, 1]."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from context_forcing.codecs.base import Codec, StreamDecoder, check_latents, check_pixels


class PixelCodec(Codec):
    """Lossless: latent = pixel / 127.5 - 1 (channels first, C = 3); pixel = round((x + 1) * 127.5) clamped.

    Exact for uint8 input: decode(encode(p)) == p. Decoding returns uint8 on the latents' device.
    """

    latent_channels = 3
    pixel_frames_per_latent = 1
    spatial_downsample = 1

    def encode(self, pixels: Tensor) -> Tensor:
        """Pixels `(B, T, H, W, 3)` uint8 -> latents `(B, T, 3, H, W)` float32 in [-1, 1]."""
        check_pixels(pixels)
        return rearrange(pixels, "b t h w c -> b t c h w").float() / 127.5 - 1.0

    def decode(self, latents: Tensor) -> Tensor:
        """Latents `(B, F, 3, H, W)` float -> pixels `(B, F, H, W, 3)` uint8."""
        check_latents(latents, self.latent_channels)
        # float32 at least: bfloat16 cannot even represent every integer in [0, 255].
        pixels = ((latents.to(torch.promote_types(latents.dtype, torch.float32)) + 1.0) * 127.5).round()
        return rearrange(pixels.clamp(0, 255).to(torch.uint8), "b f c h w -> b f h w c")

    def stream_decoder(self) -> PixelStreamDecoder:
        """A fresh streaming decoder; each chunk decodes independently, so it only guards the geometry."""
        return PixelStreamDecoder(self)


class PixelStreamDecoder(StreamDecoder):
    """Streams `PixelCodec.decode`; rejects a chunk whose batch, channels or size differ from the first."""

    def __init__(self, codec: PixelCodec) -> None:
        self.codec = codec
        self.frames_decoded = 0
        self._geometry: tuple[int, int, int, int] | None = None  # (B, C, h, w) of the stream

    def decode(self, latents: Tensor) -> Tensor:
        """Next chunk `(B, f, 3, H, W)` float -> pixels `(B, f, H, W, 3)` uint8."""
        check_latents(latents, self.codec.latent_channels)
        geometry = (latents.shape[0], *latents.shape[2:])
        if self._geometry is None:
            self._geometry = geometry
        elif geometry != self._geometry:
            raise ValueError(f"latents chunk has (B, C, h, w) = {geometry}, but this stream started with "
                             f"{self._geometry}; use a new stream_decoder() for another video")
        self.frames_decoded += latents.shape[1]
        return self.codec.decode(latents)
