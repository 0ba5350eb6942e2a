"""`Conditioning`: everything a video is conditioned on, in one type shared by generation, PanWorld and
training.

A leaf module (imports only torch) so every package may use it; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

NULL_TOKEN = 0  # the null prompt is all NULL_TOKEN ids (or all-zero embeddings); trained by prompt dropout


@dataclass(frozen=True)
class Conditioning:
    """Prompt + per-frame conditioning for a batch of B videos.

    prompt: (B, P) long token ids of the preset's vocabulary (NULL_TOKEN pads / is the null prompt), or
    prompt_embeds: (B, P, text_dim) precomputed embeddings (umT5), exactly one of the two;
    actions: (B, F, A) per-frame camera action; pose: (B, F, 1) per-frame absolute pose;
    spatial_positions: (B, F, Lf, 2) per-token (row, column) RoPE positions (None: the token grid).
    Per-frame fields are indexed by absolute latent frame (F covers the frames generated so far or planned).
    """

    prompt: Tensor | None = None
    prompt_embeds: Tensor | None = None
    actions: Tensor | None = None
    pose: Tensor | None = None
    spatial_positions: Tensor | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.prompt_embeds is None):
            raise ValueError("Conditioning needs exactly one of prompt (B, P) ids or prompt_embeds (B, P, D)")
        if self.prompt is not None and (self.prompt.ndim != 2 or self.prompt.dtype != torch.long):
            raise ValueError(f"prompt must be (B, P) torch.long, "
                             f"got {tuple(self.prompt.shape)} {self.prompt.dtype}")
        if self.prompt_embeds is not None and self.prompt_embeds.ndim != 3:
            raise ValueError(f"prompt_embeds must be (B, P, D), got {tuple(self.prompt_embeds.shape)}")
        b = self.batch_size
        for name in ("actions", "pose", "spatial_positions"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != b:
                raise ValueError(f"{name} has batch {value.shape[0]}, prompt has batch {b}")
        if self.actions is not None and self.actions.ndim != 3:
            raise ValueError(f"actions must be (B, F, A), got {tuple(self.actions.shape)}")
        if self.pose is not None and (self.pose.ndim != 3 or self.pose.shape[-1] != 1):
            raise ValueError(f"pose must be (B, F, 1), got {tuple(self.pose.shape)}")
        if self.spatial_positions is not None and (
            self.spatial_positions.ndim != 4 or self.spatial_positions.shape[-1] != 2
        ):
            raise ValueError(f"spatial_positions must be (B, F, Lf, 2), "
                             f"got {tuple(self.spatial_positions.shape)}")

    @property
    def batch_size(self) -> int:
        return (self.prompt if self.prompt is not None else self.prompt_embeds).shape[0]

    @property
    def num_frames(self) -> int | None:
        """Frames covered by the per-frame fields (None when there are none)."""
        for value in (self.actions, self.pose, self.spatial_positions):
            if value is not None:
                return value.shape[1]
        return None

    def frames(self, index: Tensor | slice) -> Conditioning:
        """Per-frame fields at `index` (a slice, or a (B, n) long tensor of absolute frames per sample)."""
        return replace(self, **{name: _take_frames(getattr(self, name), index)
                                for name in ("actions", "pose", "spatial_positions")})

    def null_prompt(self) -> Conditioning:
        """The unconditional branch of classifier-free guidance: null prompt, same actions and pose."""
        if self.prompt is not None:
            return replace(self, prompt=torch.full_like(self.prompt, NULL_TOKEN))
        return replace(self, prompt_embeds=torch.zeros_like(self.prompt_embeds))

    def select(self, batch_index: Tensor | slice) -> Conditioning:
        """A sub-batch."""
        fields = {name: None if getattr(self, name) is None else getattr(self, name)[batch_index]
                  for name in ("prompt", "prompt_embeds", "actions", "pose", "spatial_positions")}
        return Conditioning(**fields)

    def to(self, device: torch.device | str) -> Conditioning:
        fields = {name: None if getattr(self, name) is None else getattr(self, name).to(device)
                  for name in ("prompt", "prompt_embeds", "actions", "pose", "spatial_positions")}
        return Conditioning(**fields)


def _take_frames(value: Tensor | None, index: Tensor | slice) -> Tensor | None:
    if value is None:
        return None
    if isinstance(index, slice):
        return value[:, index]
    rows = torch.arange(value.shape[0], device=value.device)[:, None]  # (B, 1)
    return value[rows, index]  # (B, n, ...)


def concat_frames(parts: list[Conditioning]) -> Conditioning:
    """Join per-frame fields along time (same prompt, taken from the first part)."""
    first = parts[0]
    fields = {}
    for name in ("actions", "pose", "spatial_positions"):
        values = [getattr(p, name) for p in parts]
        fields[name] = None if values[0] is None else torch.cat(values, dim=1)
    return replace(first, **fields)
