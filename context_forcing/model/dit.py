"""CausalVideoDiT: a Wan2.1-compatible video DiT with per-frame timesteps and explicit positions.

One implementation serves the three uses of DESIGN.md section 4:
1. the chunk step: `forward(x, ..., context=AttentionContext)`, the chunk bidirectional within itself;
2. the block-causal sequence forward: `forward(x, ..., frame_mask=block_causal_mask(...))`;
3. the teacher forward: `forward(x, ..., frame_mask=<teacher mask>)` built by `rollout.teacher_inputs`.
Parameter names follow the original Wan2.1 checkpoints; `model.wan_adapter` maps them to diffusers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from einops import rearrange
from torch import Tensor, nn

from context_forcing.conditioning import Conditioning
from context_forcing.config import ModelConfig, TextConfig
from context_forcing.model.attention import (
    AttentionContext,
    CrossAttention,
    PromptContext,
    SelfAttention,
    attention_mask,
)
from context_forcing.model.rope import apply_rope, grid_positions, rope_rotation
from context_forcing.text.attributes import AttributeEncoder


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of (fractional) timesteps t (...,) -> (..., dim), as in Wan2.1."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


def pose_features(pose: Tensor, freqs: int) -> Tensor:
    """sin/cos features of the absolute pose (B, F, 1) at geometric periods 2..2^freqs ->
    (B, F, 2 * freqs)."""
    scales = 2.0 * math.pi / (2.0 ** torch.arange(1, freqs + 1, dtype=torch.float32, device=pose.device))
    args = pose.float() * scales
    return torch.cat([args.sin(), args.cos()], dim=-1)


def output_to_velocity(out: Tensor, x: Tensor, timesteps: Tensor, cfg: ModelConfig,
                       num_train_timesteps: int = 1000) -> Tensor:
    """The velocity v = eps - x0 from the head's output F for latents x (B, F, C, H, W) at timesteps (B, F).

    `velocity`: v = F. `x0`: x0 = c_skip x + c_out F with c_skip = (1 - s) sd^2 / D, c_out = s sd / sqrt(D),
    D = (1 - s)^2 sd^2 + s^2 (EDM's preconditioning for x_s = (1 - s) x0 + s eps, data std sd): a pure x0
    guess from noise at s = 1, the input passed through at s = 0. v = (x - x0) / s, written without the
    division: v = a x + b F, a = (s - (1 - s) sd^2) / D, b = -sd / sqrt(D) (finite at s = 0).
    """
    if cfg.prediction == "velocity":
        return out
    s = (timesteps.to(torch.float32) / num_train_timesteps).clamp(0, 1)
    s = s.reshape(*s.shape, *([1] * (x.ndim - s.ndim)))
    sd2 = cfg.sigma_data**2
    d = (1 - s) ** 2 * sd2 + s**2
    a = (s - (1 - s) * sd2) / d
    b = -cfg.sigma_data / d.sqrt()
    return (a * x.float() + b * out.float()).to(out.dtype)


def block_causal_mask(num_frames: int, chunk: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, F, F) frame mask: frame i sees frame j iff chunk(j) <= chunk(i)."""
    blocks = torch.arange(num_frames, device=device) // chunk
    return (blocks[None, :] <= blocks[:, None])[None]


@dataclass
class ModelOutput:
    velocity: Tensor  # (B, F, C, H, W): the flow-matching prediction eps - x0
    kv: list[tuple[Tensor, Tensor]] | None  # per layer un-rotated K, V (B, F * Lf, H, hd) of the input frames


class Block(nn.Module):
    """Wan2.1 block: adaLN self-attention, cross-attention, adaLN FFN; modulation per frame."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = SelfAttention(cfg.dim, cfg.heads, cfg.eps)
        self.cross_attn = CrossAttention(cfg.dim, cfg.heads, cfg.eps)
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        # pre-FFN (diffusers: norm3)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps)  # pre-cross-attention, affine (diffusers: norm2)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)

    def prompt_kv(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """This block's cross-attention K/V of the embedded prompt
        (a block method, so FSDP2 can unshard it)."""
        return self.cross_attn.prompt_kv(text)

    def forward(self, x: Tensor, e: Tensor, rope: Tensor, prompt: tuple[Tensor, Tensor],
                context: AttentionContext | None, layer: int, mask: Tensor | None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, F * Lf, D); e (B, F, 6, D) per-frame timestep projection."""
        frames = e.shape[1]
        # (B, F, D) each
        shift, scale, gate, c_shift, c_scale, c_gate = (self.modulation[:, None] + e).unbind(2)

        def modulate(h: Tensor, sh: Tensor, sc: Tensor) -> Tensor:
            h = h.unflatten(1, (frames, -1))  # (B, F, Lf, D)
            return (h * (1 + sc[:, :, None]) + sh[:, :, None]).flatten(1, 2)

        def gated(h: Tensor, g: Tensor) -> Tensor:
            return (h.unflatten(1, (frames, -1)) * g[:, :, None]).flatten(1, 2)

        attn, kv = self.self_attn(modulate(self.norm1(x), shift, scale), rope, context, layer, mask)
        x = x + gated(attn, gate)
        x = x + self.cross_attn(self.norm3(x), *prompt)
        x = x + gated(self.ffn(modulate(self.norm2(x), c_shift, c_scale)), c_gate)
        return x, kv


class Head(nn.Module):
    """Output head: adaLN (2 modulation vectors from the time embedding) then a linear to patch pixels."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_channels * math.prod(cfg.patch))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        shift, scale = (self.modulation[:, None] + temb[:, :, None]).unbind(2)  # (B, F, D) each
        h = self.norm(x).unflatten(1, (temb.shape[1], -1))  # (B, F, Lf, D)
        return self.head(h * (1 + scale[:, :, None]) + shift[:, :, None])  # (B, F, Lf, out * prod(patch))


class CausalVideoDiT(nn.Module):
    """The student / teacher / critic network (DESIGN.md section 4)."""

    def __init__(self, cfg: ModelConfig, text: TextConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.prompt_encoder = (AttributeEncoder(text, cfg.text_dim) if text and text.kind == "attributes"
                               else None)
        self.patch_embedding = nn.Linear(cfg.patch_features, d)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"),
                                            nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.frame_embedding = None
        if cfg.frame_cond_dim:
            self.frame_embedding = nn.Sequential(nn.Linear(cfg.frame_cond_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.head = Head(cfg)
        self.activation_checkpointing = False  # recompute blocks in backward (`set_activation_checkpointing`)
        self.initialize_weights()

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in backward instead of storing them (saves memory).

        Safe with the memory: the context K/V a block reads are fresh tensors gathered per chunk that no later
        chunk modifies, so recomputation sees exactly what the forward saw (unlike the official code).
        """
        self.activation_checkpointing = enabled

    def initialize_weights(self) -> None:
        """Wan2.1's init: xavier linears, N(0, 0.02) embedding MLPs, zero output head."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for seq in (self.text_embedding, self.time_embedding):
            for module in seq:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
        # start as the zero output (velocity or x0 correction), as Wan does
        nn.init.zeros_(self.head.head.weight)
        if self.frame_embedding is not None:
            # zero: actions and pose start as a no-op, so Wan weights (which have none) behave unchanged
            nn.init.zeros_(self.frame_embedding[-1].weight)

    # ---- conditioning -------------------------------------------------------------------------------------

    def encode_prompt(self, cond: Conditioning) -> PromptContext:
        """Prompt ids or embeddings -> per-layer cross-attention K/V, computed once per prompt."""
        if cond.prompt is not None:
            if self.prompt_encoder is None:
                raise ValueError("this model takes prompt_embeds (umT5), not prompt token ids")
            embeds = self.prompt_encoder(cond.prompt)
        else:
            embeds = cond.prompt_embeds
        text = self.text_embedding(embeds.to(self.text_embedding[0].weight.dtype))  # (B, P, D)
        kv = [block.prompt_kv(text) for block in self.blocks]
        return PromptContext([k for k, _ in kv], [v for _, v in kv])

    def frame_conditioning(self, cond: Conditioning | None, batch: int, frames: int) -> Tensor | None:
        """Per-frame conditioning vector (B, F, action_dim + 2 * pose_freqs),
        or None when the model has none."""
        if self.frame_embedding is None:
            return None
        parts = []
        if self.cfg.action_dim:
            parts.append(_per_frame(cond, "actions", batch, frames, self.cfg.action_dim))
        if self.cfg.pose_freqs:
            parts.append(pose_features(_per_frame(cond, "pose", batch, frames, 1), self.cfg.pose_freqs))
        return torch.cat(parts, dim=-1)

    def spatial_positions(self, cond: Conditioning | None, batch: int, frames: int, grid: tuple[int, int],
                          device: torch.device) -> Tensor:
        """(B, F, Lf, 2) token positions: the conditioning's map if it has one, else the token grid."""
        if cond is not None and cond.spatial_positions is not None:
            return cond.spatial_positions
        return grid_positions(*grid).to(device).expand(batch, frames, -1, -1)

    def time_embed(self, timesteps: Tensor, frame_cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-frame timesteps (B, F) -> temb (B, F, D) and block modulation e (B, F, 6, D)."""
        dtype = self.time_embedding[0].weight.dtype
        temb = self.time_embedding(timestep_embedding(timesteps, self.cfg.freq_dim).to(dtype))
        if frame_cond is not None:
            temb = temb + self.frame_embedding(frame_cond.to(dtype))
        return temb, self.time_projection(temb).unflatten(-1, (6, -1))

    # ---- context -----------------------------------------------------------------------------------------

    def prepare_context(self, keys: Tensor, values: Tensor, temporal: Tensor, spatial: Tensor,
                        valid: Tensor | None = None) -> AttentionContext:
        """Rotate stored keys at their plan positions, once per chunk.

        keys, values: (layers, B, n, Lf, H, hd) un-rotated; temporal: (B, n); spatial: (B, n, Lf, 2);
        valid: (B, n) frames that exist (padding for samples with fewer slow frames).
        """
        layers, b, n, lf, heads, hd = keys.shape
        # (B, n * Lf, 1, hd/2)
        rotation = rope_rotation(temporal, spatial, hd, self.cfg.rope_theta, keys.dtype)
        k = apply_rope(keys.reshape(layers, b, n * lf, heads, hd), rotation)
        k = k.transpose(2, 3)  # (layers, B, H, n * Lf, hd)
        v = values.reshape(layers, b, n * lf, heads, hd).transpose(2, 3)
        mask = None if valid is None or bool(valid.all()) else valid.repeat_interleave(lf, dim=1)
        return AttentionContext(list(k.unbind(0)), list(v.unbind(0)), mask)

    # ---- forward -----------------------------------------------------------------------------------------

    def forward(self, x: Tensor, timesteps: Tensor, prompt: PromptContext, temporal: Tensor,
                cond: Conditioning | None = None, context: AttentionContext | None = None,
                frame_mask: Tensor | None = None, return_kv: bool = False) -> ModelOutput:
        """Velocity for latents x (B, F, C, H, W) at per-frame timesteps (B, F) and temporal positions (B, F).

        cond carries the per-frame fields of exactly these F frames (actions, pose, spatial positions).
        context: K/V of earlier frames (the chunk step); frame_mask: (B|1, F, F) which frames see which
        (None: all, i.e. bidirectional). return_kv: also return each layer's un-rotated K and V.
        """
        b, f, _, h, w = x.shape
        _, ph, pw = self.cfg.patch
        grid = (h // ph, w // pw)
        tokens = rearrange(x, "b f c (hp ph) (wp pw) -> b (f hp wp) (c ph pw)", ph=ph, pw=pw)
        hidden = self.patch_embedding(tokens)  # (B, F * Lf, D)
        temb, e = self.time_embed(timesteps, self.frame_conditioning(cond, b, f))
        spatial = self.spatial_positions(cond, b, f, grid, x.device)
        rope = rope_rotation(temporal, spatial, self.cfg.head_dim, self.cfg.rope_theta, hidden.dtype)
        mask = attention_mask(frame_mask, grid[0] * grid[1], context, b, hidden.shape[1])
        kv = []
        checkpointed = self.activation_checkpointing and torch.is_grad_enabled()
        for layer, block in enumerate(self.blocks):
            args = (hidden, e, rope, (prompt.keys[layer], prompt.values[layer]), context, layer, mask)
            if checkpointed:
                hidden, layer_kv = torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
            else:
                hidden, layer_kv = block(*args)
            kv.append(layer_kv)
        out = self.head(hidden, temb)  # (B, F, Lf, out * ph * pw)
        out = rearrange(out, "b f (hp wp) (ph pw c) -> b f c (hp ph) (wp pw)", hp=grid[0], ph=ph, pw=pw)
        return ModelOutput(output_to_velocity(out, x, timesteps, self.cfg), kv if return_kv else None)


def _per_frame(cond: Conditioning | None, name: str, batch: int, frames: int, width: int) -> Tensor:
    value = None if cond is None else getattr(cond, name)
    if value is None:
        raise ValueError(f"this model is conditioned on {name}; Conditioning.{name} is missing")
    if value.shape[:2] != (batch, frames) or value.shape[-1] != width:
        raise ValueError(f"Conditioning.{name} must be ({batch}, {frames}, {width}) for these frames, "
                         f"got {tuple(value.shape)}")
    return value.float()
