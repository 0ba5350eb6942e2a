"""The Wan2.1 VAE (diffusers `AutoencoderKLWan`) as a codec, decoding chunk by chunk as chunks are generated.

diffusers' public `decode` clears the causal-conv feature cache on entry and exit, so it cannot stream. We
drive `vae.decoder` ourselves with a cache kept between chunks, one latent per decoder call, exactly as
`_decode` does inside one call (reference/wan_path.md section 2): the first latent of a video decodes to 1
pixel frame, every later one to 4, and the result is bit-identical to a full decode. That uses diffusers
internals (`_cached_conv_counts`, the decoder's `feat_cache` / `feat_idx` / `first_chunk` arguments), so
the version is checked (`SUPPORTED_DIFFUSERS`). Encoding streams the same way: the first group of pixel
frames must be 1 + 4k frames, later groups 4k.

Latents at our public boundary are normalised as Wan's DiT sees them: (mu - latents_mean) / latents_std.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from context_forcing.codecs.base import Codec, StreamDecoder, check_latents, check_pixels

SUPPORTED_DIFFUSERS = ("0.42.1",)  # versions whose AutoencoderKLWan internals this adapter was verified on


class WanVAEError(ValueError):
    """A VAE, a setting or an input the Wan VAE codec cannot use; the message names it and what is allowed."""


def check_diffusers_version(version: str) -> None:
    if version not in SUPPORTED_DIFFUSERS:
        raise WanVAEError(
            f"diffusers {version}: the streaming Wan VAE uses AutoencoderKLWan internals verified "
            f"on diffusers {', '.join(SUPPORTED_DIFFUSERS)} only; install "
            f"diffusers=={SUPPORTED_DIFFUSERS[-1]} (pip install 'context-forcing[wan]'), or pass "
            f"check_version=False and run tests/wan/test_vae.py to confirm parity"
        )


class WanVAECodec(Codec):
    """Latents (B, F, 16, H/8, W/8), normalised  <->  pixels (B, 1 + 4 (F - 1), H, W, 3) uint8.

    The VAE runs on `device` in `dtype` (never fp16 on CPU); pixels come back on the CPU, chunk by chunk.
    """

    pixel_frames_per_latent = 4
    spatial_downsample = 8

    def __init__(
        self,
        vae,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        check_version: bool = True,
    ) -> None:
        import diffusers  # noqa: PLC0415  slow import: only when a Wan VAE is used

        if check_version:
            check_diffusers_version(diffusers.__version__)
        if type(vae).__name__ != "AutoencoderKLWan":
            raise WanVAEError(f"expected a diffusers AutoencoderKLWan, got {type(vae).__name__}")
        config = vae.config
        if config.get("patch_size") is not None or config.get("is_residual", False):
            raise WanVAEError(
                f"AutoencoderKLWan with patch_size={config.get('patch_size')}, is_residual="
                f"{config.get('is_residual')} is the Wan2.2 VAE; this codec is Wan2.1's (patch_size "
                f"None, is_residual False)"
            )
        if torch.device(device).type == "cpu" and dtype == torch.float16:
            raise WanVAEError("dtype float16 on CPU: use float32 or bfloat16 (fp16 matmuls crawl on CPU)")
        self.vae = vae.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = torch.device(device), dtype
        self.latent_channels = int(config.z_dim)
        self.spatial_downsample = int(config.get("scale_factor_spatial") or 8)
        self._mean = torch.tensor(config.latents_mean, dtype=torch.float32).view(1, 1, -1, 1, 1)
        self._std = torch.tensor(config.latents_std, dtype=torch.float32).view(1, 1, -1, 1, 1)
        if self._mean.numel() != self.latent_channels or self._std.numel() != self.latent_channels:
            raise WanVAEError(
                f"latents_mean / latents_std have {self._mean.numel()} / {self._std.numel()} entries "
                f"for z_dim {self.latent_channels}"
            )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        check_version: bool = True,
    ) -> WanVAECodec:
        """From a LOCAL diffusers folder: the VAE folder itself or a pipeline root with `vae/`."""
        from diffusers import AutoencoderKLWan  # noqa: PLC0415

        path = Path(path)
        folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no AutoencoderKLWan config.json in {path} or {path / 'vae'}")
        vae = AutoencoderKLWan.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype)
        return cls(vae, device, dtype, check_version)

    # ---- normalisation ------------------------------------------------------------------------------

    def normalize(self, mu: Tensor) -> Tensor:
        """VAE posterior mean (B, F, C, h, w) -> the DiT's latent space: (mu - mean) / std."""
        return (mu.float() - self._mean.to(mu.device)) / self._std.to(mu.device)

    def denormalize(self, latents: Tensor) -> Tensor:
        """Inverse of `normalize`."""
        return latents.float() * self._std.to(latents.device) + self._mean.to(latents.device)

    # ---- Codec ----------------------------------------------------------------------------------------

    def encode(self, pixels: Tensor) -> Tensor:
        """A whole clip (B, 1 + 4k, H, W, 3) uint8 -> normalised latents (B, 1 + k, C, H/8, W/8) float32."""
        return self.stream_encoder().encode(pixels)

    def decode(self, latents: Tensor) -> Tensor:
        """A whole video's latents (B, F, C, h, w) -> pixels (B, 1 + 4 (F - 1), H, W, 3) uint8."""
        return self.stream_decoder().decode(latents)

    def stream_decoder(self) -> WanVAEStreamDecoder:
        self._refuse_tiling()
        return WanVAEStreamDecoder(self)

    def stream_encoder(self) -> WanVAEStreamEncoder:
        self._refuse_tiling()
        return WanVAEStreamEncoder(self)

    def _refuse_tiling(self) -> None:
        if getattr(self.vae, "use_tiling", False):
            raise WanVAEError(
                "the VAE has tiling enabled (vae.enable_tiling()); tiled decoding restarts the "
                "causal cache per tile and cannot stream: call vae.disable_tiling()"
            )

    def _fresh_cache(self, part: str) -> list:
        return [None] * self.vae._cached_conv_counts[part]


class WanVAEStreamDecoder(StreamDecoder):
    """One video: each chunk's latents decode through the decoder's causal cache, one latent per call."""

    def __init__(self, codec: WanVAECodec) -> None:
        self.codec = codec
        self.latents_decoded = 0
        self._cache = codec._fresh_cache("decoder")
        self._batch: int | None = None

    @torch.no_grad()
    def decode_float(self, latents: Tensor) -> Tensor:
        """Next chunk (B, f, C, h, w) normalised -> pixels in [-1, 1], (B, C, t, H, W) on the VAE's device."""
        codec = self.codec
        check_latents(latents, codec.latent_channels)
        if self._batch is None:
            self._batch = latents.shape[0]
        elif latents.shape[0] != self._batch:
            raise WanVAEError(
                f"latents chunk has batch {latents.shape[0]}, this stream started with {self._batch}"
            )
        z = rearrange(codec.denormalize(latents), "b f c h w -> b c f h w").to(codec.device, codec.dtype)
        x = codec.vae.post_quant_conv(z)  # 1x1x1, stateless
        frames = []
        for i in range(x.shape[2]):
            first = self.latents_decoded == 0
            # one latent per call: the first call skips temporal upsampling for all its input ("Rep"), so a
            # several-latent first call would give 1 frame per latent instead of 1 + 4 (f - 1)
            frames.append(
                codec.vae.decoder(x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=[0], first_chunk=first)
            )
            self.latents_decoded += 1
        return torch.cat(frames, dim=2).clamp(-1.0, 1.0)

    def decode(self, latents: Tensor) -> Tensor:
        """Next chunk (B, f, C, h, w) -> pixels (B, t, H, W, 3) uint8 on the CPU (t = 4f, or 4f - 3 first)."""
        return to_uint8(self.decode_float(latents))


class WanVAEStreamEncoder:
    """One clip: groups of pixel frames through the encoder's causal cache (first 1 + 4k, then 4k frames)."""

    def __init__(self, codec: WanVAECodec) -> None:
        self.codec = codec
        self.frames_encoded = 0
        self._cache = codec._fresh_cache("encoder")

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> Tensor:
        """Next pixel frames (B, T, H, W, 3) uint8 -> normalised latents (B, T // 4 (+1 first), C, h, w)."""
        check_pixels(pixels)
        codec, t = self.codec, pixels.shape[1]
        first = self.frames_encoded == 0
        if (first and (t - 1) % 4) or (not first and (t == 0 or t % 4)):
            allowed = "1 + 4k frames (1, 5, 9, ...)" if first else "a positive multiple of 4 frames"
            raise WanVAEError(
                f"{'first' if first else 'later'} pixel chunk has {t} frames; the Wan VAE encodes "
                f"{allowed} {'first' if first else 'after the first chunk'}"
            )
        down = codec.spatial_downsample
        if pixels.shape[2] % down or pixels.shape[3] % down:
            raise WanVAEError(f"frame size {tuple(pixels.shape[2:4])} must be divisible by {down}")
        x = rearrange(pixels, "b t h w c -> b c t h w").to(codec.device, codec.dtype) / 127.5 - 1.0
        groups = ([x[:, :, :1]] if first else []) + list(x[:, :, 1 if first else 0 :].split(4, dim=2))
        outs = [codec.vae.encoder(g, feat_cache=self._cache, feat_idx=[0]) for g in groups if g.shape[2]]
        self.frames_encoded += t
        mu, _ = codec.vae.quant_conv(torch.cat(outs, dim=2)).chunk(2, dim=1)  # posterior mean, log-variance
        return codec.normalize(rearrange(mu.float(), "b c f h w -> b f c h w")).cpu()


def to_uint8(pixels: Tensor) -> Tensor:
    """(B, C, t, H, W) in [-1, 1] -> (B, t, H, W, C) uint8 on the CPU, (x + 1) * 127.5 rounded."""
    out = ((pixels.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return rearrange(out, "b c t h w -> b t h w c").cpu()
