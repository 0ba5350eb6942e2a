"""3-D rotary position embedding (Wan2.1 split) driven by explicit position maps.

The head dim holds `c = head_dim / 2` rotation pairs: `c - 2 * (c // 3)` for time, `c // 3` each for the
token row and column (Wan2.1; diffusers' `WanRotaryPosEmbed` gives the same split). Pairs are interleaved
(even, odd) channels. Positions are floats, so a spatial map may carry world coordinates (PanWorld's
world x) instead of the token grid, and temporal positions come from the memory plan (bounded).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Rotation pairs for (time, row, column)."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def axis_frequencies(head_dim: int, theta: float, dtype: torch.dtype = torch.float64) -> tuple[Tensor, ...]:
    """Per-axis angular frequencies theta^(-2i / axis_channels), i < pairs (RoFormer eq. 15 per axis)."""
    freqs = []
    for pairs in axis_pairs(head_dim):
        channels = 2 * pairs
        freqs.append(1.0 / theta ** (torch.arange(0, channels, 2, dtype=dtype) / channels))
    return tuple(freqs)


def grid_positions(rows: int, cols: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The default spatial map: (rows * cols, 2) token (row, column) indices in raster order."""
    r = torch.arange(rows, dtype=dtype).repeat_interleave(cols)
    c = torch.arange(cols, dtype=dtype).repeat(rows)
    return torch.stack([r, c], dim=-1)


@lru_cache(maxsize=16)
def _frequencies(head_dim: int, theta: float, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
    """`axis_frequencies` on a device, computed once per geometry (constants; callers never write to them)."""
    with torch.inference_mode(False):  # normal tensors even when first built under inference_mode
        return tuple(f.to(device) for f in axis_frequencies(head_dim, theta, dtype))


def rope_angles(temporal: Tensor, spatial: Tensor, head_dim: int, theta: float,
                dtype: torch.dtype = torch.float64) -> Tensor:
    """Angles (B, F * Lf, head_dim / 2) from temporal (B, F) and spatial (B, F, Lf, 2) positions."""
    f_t, f_h, f_w = _frequencies(head_dim, float(theta), dtype, temporal.device)
    b, f, lf, _ = spatial.shape
    t = temporal.to(dtype=dtype)[:, :, None, None] * f_t  # (B, F, 1, pt)
    h = spatial[..., 0:1].to(dtype=dtype) * f_h  # (B, F, Lf, ph)
    w = spatial[..., 1:2].to(dtype=dtype) * f_w  # (B, F, Lf, pw)
    angles = torch.cat([t.expand(b, f, lf, -1), h, w], dim=-1)
    return angles.reshape(b, f * lf, -1)


def rope_rotation(temporal: Tensor, spatial: Tensor, head_dim: int, theta: float,
                  dtype: torch.dtype) -> Tensor:
    """Unit complex rotations (B, L, 1, head_dim / 2), angles computed in float64 for accuracy.

    Complex64 for fp32 (complex128 for fp64) so that `apply_rope` is one complex multiply.
    """
    angles = rope_angles(temporal, spatial, head_dim, theta)[:, :, None]
    rotation = torch.polar(torch.ones_like(angles), angles)
    return rotation.to(dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)


def apply_rope(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate interleaved channel pairs (x[2i], x[2i+1]) of x (B, L, H, head_dim) by rotation
    (B, L, 1, head_dim / 2).

    Out of place, so it is safe under autograd. Half-precision inputs (no complex type) take the real path.
    """
    if x.dtype in (torch.float32, torch.float64):
        pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous())
        return torch.view_as_real(pairs * rotation.to(dtype=pairs.dtype)).flatten(-2)
    cos, sin = rotation.real.to(dtype=x.dtype), rotation.imag.to(dtype=x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
