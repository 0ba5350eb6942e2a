"""The codec interface: latents `(B, F, C, h, w)` float <-> pixels `(B, T, H, W, 3)` uint8.

A codec encodes and decodes whole videos; streaming generation decodes chunk by chunk through a
`StreamDecoder`, which keeps whatever state the codec needs between chunks (a causal VAE's conv caches;
for the pixel codec, only the stream's geometry). Streaming must equal decoding the whole video at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class StreamDecoder(ABC):
    """Decodes one video's latents chunk by chunk, keeping state between calls."""

    @abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """Next chunk of latents `(B, f, C, h, w)` -> its pixels `(B, t, H, W, 3)` uint8."""


class Codec(ABC):
    """Latents <-> pixels. `latent (h, w) = pixel (H, W) // spatial_downsample`; the pixel frames per latent
    frame is `pixel_frames_per_latent` (a causal VAE such as Wan's may give the first latent frame fewer)."""

    latent_channels: int
    pixel_frames_per_latent: int
    spatial_downsample: int

    @abstractmethod
    def encode(self, pixels: Tensor) -> Tensor:
        """Pixels `(B, T, H, W, 3)` uint8 -> latents `(B, F, C, h, w)` float32."""

    @abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """A whole video's latents `(B, F, C, h, w)` -> pixels `(B, T, H, W, 3)` uint8."""

    @abstractmethod
    def stream_decoder(self) -> StreamDecoder:
        """A fresh streaming decoder (empty state) for one video."""


def check_pixels(pixels: Tensor, name: str = "pixels") -> None:
    """Raise ValueError unless `pixels` is a uint8 tensor `(B, T, H, W, 3)`."""
    if not isinstance(pixels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (B, T, H, W, 3) uint8, got {type(pixels).__name__}")
    if pixels.dtype != torch.uint8:
        raise ValueError(f"{name} must have dtype torch.uint8, got {pixels.dtype}")
    if pixels.ndim != 5 or pixels.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, T, H, W, 3), got {tuple(pixels.shape)}")


def check_latents(latents: Tensor, channels: int, name: str = "latents") -> None:
    """Raise ValueError unless `latents` is a finite floating tensor `(B, F, channels, h, w)`."""
    if not isinstance(latents, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (B, F, C, h, w), got {type(latents).__name__}")
    if not latents.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype (float16/bfloat16/float32/float64), "
                         f"got {latents.dtype}")
    if latents.ndim != 5 or latents.shape[2] != channels:
        raise ValueError(f"{name} must have shape (B, F, C={channels}, h, w), got {tuple(latents.shape)}")
    # A diverged model gives NaN/inf; casting those to uint8 would silently write garbage frames.
    bad = (~torch.isfinite(latents)).sum().item()
    if bad:
        raise ValueError(f"{name} contain {bad} non-finite values (NaN or inf)")
