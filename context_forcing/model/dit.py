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
from functools import lru_cache

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import Tensor, nn

from context_forcing.conditioning import Conditioning
from context_forcing.config import ModelConfig, TextConfig
from context_forcing.model.attention import (
    AttentionContext,
    CrossAttention,
    FrameMask,
    PromptContext,
    SelfAttention,
    attention_mask,
)
from context_forcing.model.rope import apply_rope, grid_positions, rope_rotation
from context_forcing.text.attributes import AttributeEncoder


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of (fractional) timesteps t (...,) -> (..., dim), as in Wan2.1."""
    args = t.float()[..., None] * _timestep_frequencies(dim, max_period, t.device)
    return torch.cat([args.cos(), args.sin()], dim=-1)


@lru_cache(maxsize=16)
def _timestep_frequencies(dim: int, max_period: float, device: torch.device) -> Tensor:
    """exp(-log(max_period) i / half), i < half = dim / 2: constants, computed once per (dim, device)."""
    half = dim // 2
    with torch.inference_mode(False):
        index = torch.arange(half, dtype=torch.float32, device=device)
        return torch.exp(-math.log(max_period) * index / half)


@lru_cache(maxsize=16)
def _scale_ones(dtype: torch.dtype, device: torch.device) -> Tensor:
    """(6, 1, 1): 1 at the two adaLN scale rows (1 and 4) of a block's modulation, 0 elsewhere (a constant;
    a normal tensor even when first built under inference_mode, like the other cached constants)."""
    with torch.inference_mode(False):
        return torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0], dtype=dtype, device=device)[:, None, None]


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
    s = (timesteps.to(dtype=torch.float32) / num_train_timesteps).clamp(0, 1)
    s = s.reshape(*s.shape, *([1] * (x.ndim - s.ndim)))
    sd2 = cfg.sigma_data**2
    d = (1 - s) ** 2 * sd2 + s**2
    a = (s - (1 - s) * sd2) / d
    b = -cfg.sigma_data / d.sqrt()
    return (a * x.float() + b * out.float()).to(dtype=out.dtype)


def block_causal_mask(num_frames: int, chunk: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, F, F) frame mask: frame i sees frame j iff chunk(j) <= chunk(i)."""
    blocks = torch.arange(num_frames, device=device) // chunk
    return (blocks[None, :] <= blocks[:, None])[None]


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU, tanh approximation (Wan's FFN): 0.5 x (1 + tanh(u)) written as x sigmoid(2u),
    u = sqrt(2 / pi) (x + 0.044715 x^3); the same function (within 1e-6 of `F.gelu(x, approximate="tanh")`),
    2.3x faster on this CPU at the FFN's sizes (torch 2.13's tanh-GELU kernel is slower than sigmoid's).

    Under autograd the forward is the same (bit for bit, so a trained forward equals a no-grad one) and the
    backward is torch's fused tanh-GELU derivative: one kernel where autograd through these five ops runs
    about ten, and only x is saved (`_GeluTanh`)."""
    if x.requires_grad and torch.is_grad_enabled():
        return _GeluTanh.apply(x)
    return _gelu_sigmoid_form(x)


def _gelu_sigmoid_form(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x.pow(3).mul_(0.044715).add_(x).mul_(_TWO_SQRT_2_OVER_PI))


class _GeluTanh(torch.autograd.Function):
    """Forward `_gelu_sigmoid_form`; backward `aten::gelu_backward(approximate="tanh")`, its derivative."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return _gelu_sigmoid_form(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.gelu_backward(grad, x, approximate="tanh")


_TWO_SQRT_2_OVER_PI = 2 * math.sqrt(2 / math.pi)


@dataclass
class PreparedFrames:
    """What a forward derives from positions alone, not from latents, timesteps or parameters: every call of a
    chunk (its denoising passes and the commit pass) can share one (`prepare_frames`). Parameter-free, so it
    is safe to compute outside `forward` (FSDP unshards parameters only inside it) and under autograd.

    rope: (B, F * Lf, 1, hd / 2) complex rotations; mask: what SelfAttention masks (`attention_mask`)."""

    rope: Tensor
    mask: Tensor | FrameMask | None


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
        # Wan's FFN; `forward` applies ffn.0, `gelu_tanh` (= ffn.1's function) and ffn.2 directly
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)

    def prompt_kv(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """This block's cross-attention K/V of the embedded prompt
        (a block method, so FSDP2 can unshard it)."""
        return self.cross_attn.prompt_kv(text)

    def forward(self, x: Tensor, e: Tensor, rope: Tensor, prompt: tuple[Tensor, Tensor],
                context: AttentionContext | None, layer: int, mask: Tensor | FrameMask | None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, F, Lf, D); e (B, F, 6, 1, D) per-frame timestep projection, 1 already added to the two scale
        rows (`modulation_input`), so that adaLN's h * (1 + scale) + shift is one addcmul."""
        # (B, F, 1, D) each, broadcast over the frame's tokens
        shift, scale, gate, c_shift, c_scale, c_gate = (self.modulation[:, :, None] + e).unbind(2)
        # submodules' functions called directly (fewer module calls on the streaming hot path; same math)
        d = x.shape[-1:]
        h = torch.addcmul(shift, F.layer_norm(x, d, eps=self.norm1.eps), scale)  # (B, F, Lf, D)
        attn, kv = self.self_attn(h.flatten(1, 2), rope, context, layer, mask)  # (B, F * Lf, D)
        x = torch.addcmul(x, attn.view_as(x), gate)
        h = F.layer_norm(x, d, self.norm3.weight, self.norm3.bias, self.norm3.eps)
        x = x + self.cross_attn(h.flatten(1, 2), *prompt).view_as(x)
        up, down = self.ffn[0], self.ffn[2]
        h = torch.addcmul(c_shift, F.layer_norm(x, d, eps=self.norm2.eps), c_scale)
        h = gelu_tanh(F.linear(h, up.weight, up.bias))
        return torch.addcmul(x, F.linear(h, down.weight, down.bias), c_gate), kv


class Head(nn.Module):
    """Output head: adaLN (2 modulation vectors from the time embedding) then a linear to patch pixels."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_channels * math.prod(cfg.patch))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """x (B, F, Lf, D), temb (B, F, D) -> (B, F, Lf, out * prod(patch))."""
        shift, scale = (self.modulation[:, None] + temb[:, :, None]).unbind(2)  # (B, F, D) each
        return self.head(torch.addcmul(shift[:, :, None], self.norm(x), 1 + scale[:, :, None]))


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
        temb = self.time_embedding(timestep_embedding(timesteps, self.cfg.freq_dim).to(dtype=dtype))
        if frame_cond is not None:
            temb = temb + self.frame_embedding(frame_cond.to(dtype=dtype))
        return temb, self.time_projection(temb).unflatten(-1, (6, -1))

    def prepare_frames(self, temporal: Tensor, cond: Conditioning | None, batch: int, frames: int,
                       grid: tuple[int, int], device: torch.device, context: AttentionContext | None = None,
                       frame_mask: Tensor | None = None) -> PreparedFrames:
        """RoPE rotations and attention mask of F frames at temporal positions (B, F) (spatial positions from
        cond): independent of latents, timesteps and parameters, so a chunk's calls share one."""
        spatial = self.spatial_positions(cond, batch, frames, grid, device)
        dtype = self.patch_embedding.weight.dtype
        rope = rope_rotation(temporal, spatial, self.cfg.head_dim, self.cfg.rope_theta, dtype)
        mask = attention_mask(frame_mask, grid[0] * grid[1], context, batch, frames * grid[0] * grid[1])
        return PreparedFrames(rope, mask)

    # ---- context -----------------------------------------------------------------------------------------

    def prepare_context(self, keys: Tensor, values: Tensor, temporal: Tensor, spatial: Tensor,
                        valid: Tensor | None = None, keep_mask: bool = False) -> AttentionContext:
        """Rotate stored keys at their plan positions, once per chunk.

        keys, values: (layers, B, n, Lf, H, hd) un-rotated; temporal: (B, n); spatial: (B, n, Lf, 2);
        valid: (B, n) frames that exist (padding for samples with fewer slow frames); dropped when all are
        valid (SDPA's unmasked path) unless `keep_mask` (a compiled forward's one graph).
        """
        layers, b, n, lf, heads, hd = keys.shape
        # (B, n * Lf, 1, hd/2)
        rotation = rope_rotation(temporal, spatial, hd, self.cfg.rope_theta, keys.dtype)
        k = apply_rope(keys.reshape(layers, b, n * lf, heads, hd), rotation)
        k = k.transpose(2, 3)  # (layers, B, H, n * Lf, hd)
        v = values.reshape(layers, b, n * lf, heads, hd).transpose(2, 3)
        drop = valid is None or (not keep_mask and bool(valid.all()))
        mask = None if drop else valid.repeat_interleave(lf, dim=1)
        return AttentionContext(list(k.unbind(0)), list(v.unbind(0)), mask)

    # ---- forward -----------------------------------------------------------------------------------------

    def forward(self, x: Tensor, timesteps: Tensor, prompt: PromptContext, temporal: Tensor,
                cond: Conditioning | None = None, context: AttentionContext | None = None,
                frame_mask: Tensor | None = None, return_kv: bool = False,
                prepared: PreparedFrames | None = None) -> ModelOutput:
        """Velocity for latents x (B, F, C, H, W) at per-frame timesteps (B, F) and temporal positions (B, F).

        cond carries the per-frame fields of exactly these F frames (actions, pose, spatial positions).
        context: K/V of earlier frames (the chunk step); frame_mask: (B|1, F, F) which frames see which
        (None: all, i.e. bidirectional). return_kv: also return each layer's un-rotated K and V.
        prepared: `prepare_frames` of these temporal positions, cond, context and frame_mask (a chunk's calls
        share one); None: computed here.
        """
        b, f, _, h, w = x.shape
        _, ph, pw = self.cfg.patch
        grid = (h // ph, w // pw)
        if prepared is None:
            prepared = self.prepare_frames(temporal, cond, b, f, grid, x.device, context, frame_mask)
        tokens = rearrange(x, "b f c (hp ph) (wp pw) -> b f (hp wp) (c ph pw)", ph=ph, pw=pw)
        # (B, F, Lf, D); a bf16 model takes fp32 latents
        hidden = self.patch_embedding(tokens.to(dtype=self.patch_embedding.weight.dtype))
        temb, e = self.time_embed(timesteps, self.frame_conditioning(cond, b, f))
        e = modulation_input(e)  # (B, F, 6, 1, D)
        kv = []
        checkpointed = self.activation_checkpointing and torch.is_grad_enabled()
        for layer, block in enumerate(self.blocks):
            args = (hidden, e, prepared.rope, (prompt.keys[layer], prompt.values[layer]), context, layer,
                    prepared.mask)
            if checkpointed:
                hidden, layer_kv = torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
            else:
                hidden, layer_kv = block(*args)
            kv.append(layer_kv)
        out = self.head(hidden, temb)  # (B, F, Lf, out * ph * pw)
        out = rearrange(out, "b f (hp wp) (ph pw c) -> b f c (hp ph) (wp pw)", hp=grid[0], ph=ph, pw=pw)
        return ModelOutput(output_to_velocity(out, x, timesteps, self.cfg), kv if return_kv else None)


def modulation_input(e: Tensor) -> Tensor:
    """Block modulation e (B, F, 6, D) -> (B, F, 6, 1, D) (broadcast over a frame's tokens) with 1 added to
    the two scale rows (1 and 4), once per forward instead of twice per block."""
    return e[:, :, :, None] + _scale_ones(e.dtype, e.device)


def _per_frame(cond: Conditioning | None, name: str, batch: int, frames: int, width: int) -> Tensor:
    value = None if cond is None else getattr(cond, name)
    if value is None:
        raise ValueError(f"this model is conditioned on {name}; Conditioning.{name} is missing")
    if value.shape[:2] != (batch, frames) or value.shape[-1] != width:
        raise ValueError(f"Conditioning.{name} must be ({batch}, {frames}, {width}) for these frames, "
                         f"got {tuple(value.shape)}")
    return value.float()
