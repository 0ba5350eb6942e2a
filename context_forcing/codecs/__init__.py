"""Latents <-> pixels behind one streaming interface: the lossless pixel codec; the Wan VAE (`wan.vae`)."""

from context_forcing.codecs.base import Codec, StreamDecoder, check_latents, check_pixels
from context_forcing.codecs.pixel import PixelCodec, PixelStreamDecoder
from context_forcing.config import CodecConfig, ConfigError, VideoConfig

__all__ = [
    "Codec",
    "PixelCodec",
    "PixelStreamDecoder",
    "StreamDecoder",
    "build_codec",
    "check_latents",
    "check_pixels",
]


def build_codec(cfg: CodecConfig, video: VideoConfig) -> Codec:
    """The codec named by `cfg.kind`, checked against the video geometry it must produce."""
    if cfg.kind == "pixel":
        if video.pixel_frames_per_latent != 1:
            raise ConfigError(f"video.pixel_frames_per_latent must be 1 for codec.kind 'pixel' (one RGB "
                              f"frame per latent frame), got {video.pixel_frames_per_latent}")
        if cfg.weights is not None:
            raise ConfigError(f"codec.weights must be None for codec.kind 'pixel' (it has no weights), "
                              f"got {cfg.weights!r}")
        return PixelCodec()
    if cfg.kind == "wan-vae":
        if cfg.weights is None:
            raise ConfigError("codec.weights must name a local Wan2.1 VAE folder "
                              "(AutoencoderKLWan, or a Wan2.1 diffusers folder with vae/) "
                              "for codec.kind 'wan-vae', got None")
        from context_forcing.wan.vae import WanVAECodec  # diffusers: imported only when used

        return WanVAECodec.from_pretrained(cfg.weights)
    raise ConfigError(f"codec.kind must be 'pixel' or 'wan-vae', got {cfg.kind!r}")
