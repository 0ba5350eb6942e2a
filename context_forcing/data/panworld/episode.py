"""PanWorld episodes: rejection sampling under revisit constraints, and their conditioning.

An episode is a layout, a camera path, the shrine (the state change) and the distractor squares, all
drawn from one explicit numpy Generator seeded by the episode seed: same seed, same episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from context_forcing.conditioning import NULL_TOKEN, Conditioning
from context_forcing.data.panworld.columns import column_labels
from context_forcing.data.panworld.config import PanWorldConfig, check_seed, split_of
from context_forcing.data.panworld.path import occlusion_by_position, sample_camera_path, subject_visibility
from context_forcing.data.panworld.world import (
    Layout,
    Scene,
    paint_scene,
    pillar_columns,
    sample_layout,
    subject_screen_box,
    subject_sprites,
)

_STREAM = 0x50414E  # separates PanWorld's random stream from other users of the same integer seed
NO_SHRINE = -(10**6)  # shrine_x of an episode too crowded to hide an unpassed shrine: painted off-world


@dataclass(frozen=True)
class RevisitConstraints:
    """What every episode of a length must contain (benchmarks.md "The world"); inactive for short episodes.

    returns: >= min_returns separate runs of frames showing a column with gap > mid_gap;
    long: a column with gap > long_gap that was last seen before frame recall_before (so P1, prefilled up
    to recall_before, meets a long gap); far (None: no such constraint): the same with a gap in
    [far[0], far[1]) (episodes of at least far_frames frames); after_sink: a column with gap > mid_gap
    outside the sink; state change inside [change_lo, change_hi]; occlusion: the subject is hidden, and fully
    visible both before and after.
    """

    active: bool
    mid_gap: int
    long_gap: int
    min_returns: int
    recall_before: int
    change_lo: int
    change_hi: int
    occlusion: bool
    far: tuple[int, int] | None = None


def revisit_constraints(cfg: PanWorldConfig, frames: int) -> RevisitConstraints:
    """The constraints at `frames`: the config's gaps at reference_frames, scaled down linearly below it; the
    far revisit (not scaled) from far_frames on, so shorter episodes are sampled as before it existed."""
    scale = min(1.0, frames / cfg.reference_frames)
    mid = max(1, int(cfg.mid_gap * scale))
    # A subtoken camera covers ~token_width times fewer px per frame, so it needs as many more frames.
    active = frames >= cfg.min_constrained_frames * cfg.token_width // cfg.move_px
    lo = max(1, math.ceil(frames * cfg.state_change_min_fraction)) if active else 1
    hi = min(frames - 1, int(frames * cfg.state_change_max_fraction)) if active else frames - 1
    return RevisitConstraints(
        active=active, mid_gap=mid, long_gap=max(mid, int(cfg.long_gap * scale)), min_returns=cfg.min_returns,
        recall_before=max(1, int(frames * cfg.p1_fraction)), change_lo=lo, change_hi=hi,
        occlusion=frames >= cfg.occlusion_min_frames,
        far=(cfg.far_gap, 2 * cfg.far_gap) if active and frames >= cfg.far_frames else None)


def meets_revisit_constraints(cons: RevisitConstraints, gap: np.ndarray, sink: np.ndarray) -> bool:
    """Check the revisit parts of `cons` on column labels gap, sink (F, fw)."""
    if not cons.active:
        return True
    t = np.arange(gap.shape[0])[:, None]
    returning = (gap > cons.mid_gap).any(axis=1)  # (F,)
    runs = int(returning[0]) + int((returning[1:] & ~returning[:-1]).sum())
    recalled = (gap > cons.long_gap) & (t - gap < cons.recall_before)
    after_sink = (gap > cons.mid_gap) & ~sink
    far = True
    if cons.far is not None:
        far = bool(((gap >= cons.far[0]) & (gap < cons.far[1]) & (t - gap < cons.recall_before)).any())
    return runs >= cons.min_returns and bool(recalled.any()) and bool(after_sink.any()) and far


def occluded_between_visible(visibility: np.ndarray) -> bool:
    """The subject is partly hidden at some frame with fully visible frames before and after it."""
    full = np.flatnonzero(visibility >= 1.0)
    hidden = np.flatnonzero(visibility < 1.0)
    return bool(full.size and ((hidden > full[0]) & (hidden < full[-1])).any())


def place_shrine(cfg: PanWorldConfig, rng: np.random.Generator, camera_x: np.ndarray, pillars: np.ndarray,
                 visibility: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """(state change frame, shrine centre column): the shrine stands where the subject comes within
    `shrine_radius` of it for the first time, at a random frame in [lo, hi] while fully visible, so the change
    is tied to a place, never to a clock (benchmarks.md pitfall 9). Without such a frame: (-1, a column the
    subject never comes near)."""
    _, left = subject_screen_box(cfg)
    r = cfg.shrine_radius
    centre = camera_x + left + cfg.subject_width // 2  # (F,) the subject's world column
    spots = centre[:, None] + np.arange(-r, r + 1)  # (F, 2r + 1) shrine columns the subject reaches at t
    near = np.abs(spots[:, :, None] - centre[None, None, :]) <= r  # (F, 2r + 1, F): reached at frame s
    earlier = np.arange(len(centre))[None, None, :] < np.arange(len(centre))[:, None, None]
    first = ~(near & earlier).any(axis=2)  # (F, 2r + 1): no earlier frame came this close
    half = cfg.shrine_width // 2
    span = np.clip(spots[..., None] - half + np.arange(cfg.shrine_width), 0, cfg.world_width - 1)
    clear = ~pillars[span].any(axis=2) & (spots >= 0) & (spots < cfg.world_width)  # no pillar in front
    frames = np.arange(len(centre))
    ok = first & clear & ((visibility >= 1.0) & (frames >= lo) & (frames <= hi))[:, None]
    if ok.any():
        change = int(rng.choice(np.flatnonzero(ok.any(axis=1))))
        return change, int(spots[change, rng.choice(np.flatnonzero(ok[change]))])
    columns = np.arange(cfg.world_width)
    unpassed = (np.abs(columns[:, None] - centre[None, :]) > r).all(axis=1)
    return -1, int(rng.choice(np.flatnonzero(unpassed))) if unpassed.any() else NO_SHRINE


@dataclass(frozen=True, eq=False)
class Episode:
    """One sampled episode: camera_x (F,) px; `state_change_frame` -1 when the subject never changes;
    flicker squares (distractors) as flicker_on (F,), flicker_box (F, 2) (top, left), flicker_rgb (F, 3)."""

    cfg: PanWorldConfig
    seed: int
    layout: Layout
    camera_x: np.ndarray
    shrine_x: int
    state_change_frame: int
    flicker_on: np.ndarray
    flicker_box: np.ndarray
    flicker_rgb: np.ndarray
    attempts: int  # camera paths drawn before one met the constraints

    @property
    def frames(self) -> int:
        return len(self.camera_x)

    @cached_property
    def scene(self) -> Scene:
        """The painted panorama, once per episode."""
        return paint_scene(self.cfg, self.layout, self.shrine_x)

    @cached_property
    def sprites(self) -> tuple[np.ndarray, np.ndarray]:
        """Subject (rgb, alpha) before / after the state change, see `world.subject_sprites`."""
        return subject_sprites(self.cfg, self.layout.subject)

    @cached_property
    def subject_visibility(self) -> np.ndarray:
        """(F,) share of the subject's body pixels not hidden by a pillar."""
        body = self.sprites[1][0]
        return subject_visibility(self.cfg, self.camera_x, self.scene.pillar_columns, body)

    @property
    def state_index(self) -> np.ndarray:
        """(F,) 0 before the state change, 1 from it on."""
        frames = np.arange(self.frames)
        return ((frames >= self.state_change_frame) & (self.state_change_frame >= 0)).astype(np.int64)

    @property
    def moves(self) -> np.ndarray:
        """(F,) camera move into each frame in action units (tokens; px in subtoken mode); 0 at frame 0."""
        return np.diff(self.camera_x, prepend=self.camera_x[:1]) // self.cfg.move_px

    def prompt_ids(self) -> np.ndarray:
        """(4,) int64 ids of palette, subject shape, subject colour, landmark density; ids 1.., 0 is null."""
        layout = self.layout
        values = (layout.palette, layout.subject.shape, layout.subject.colour, layout.density)
        offsets = np.cumsum((1,) + self.cfg.prompt_sizes[:-1])
        return offsets + np.asarray(values, dtype=np.int64)

    def conditioning(self, start: int = 0, stop: int | None = None, *, spatial: bool = False,
                     grid: tuple[int, int] | None = None, prompt_len: int = 4) -> Conditioning:
        """Batch-1 Conditioning of frames [start, stop).

        prompt (1, prompt_len) ids padded with NULL_TOKEN; actions (1, F, A) one-hot over `cfg.moves`
        (token mode A = 3: -1, 0, +1 token; subtoken mode A = 5: -2..+2 px); pose (1, F, 1) camera x in
        tokens (px / token_width, fractional in subtoken mode); with `spatial`, spatial_positions
        (1, F, rows * cols, 2) = (row, camera x in token columns + column) on the token `grid` (default: one
        row of strip tokens).
        """
        ids = self.prompt_ids()
        if prompt_len < len(ids):
            raise ValueError(f"prompt_len must be >= {len(ids)} (the PanWorld attributes), got {prompt_len}")
        prompt = torch.full((1, prompt_len), NULL_TOKEN, dtype=torch.long)
        prompt[0, :len(ids)] = torch.from_numpy(ids)
        index = torch.from_numpy(self.moves[start:stop] - self.cfg.moves[0])
        actions = torch.nn.functional.one_hot(index, self.cfg.action_dim).float()[None]  # (1, F, A)
        camera_x = torch.from_numpy(self.camera_x[start:stop]).float()
        pose = (camera_x / self.cfg.token_width)[None, :, None]  # (1, F, 1)
        positions = None
        if spatial:
            rows, cols = grid if grid is not None else (1, self.cfg.tokens_per_frame)
            if self.cfg.frame_width % cols:
                raise ValueError(f"grid columns ({cols}) must divide frame_width ({self.cfg.frame_width})")
            column = camera_x[:, None] / (self.cfg.frame_width // cols) + torch.arange(cols)  # (F, cols)
            row = torch.arange(rows, dtype=torch.float32)
            positions = torch.stack([row[None, :, None].expand(len(camera_x), rows, cols),
                                     column[:, None, :].expand(-1, rows, cols)], dim=-1)
            positions = positions.reshape(1, len(camera_x), rows * cols, 2)
        return Conditioning(prompt=prompt, actions=actions, pose=pose, spatial_positions=positions)


def stack_conditioning(parts: list[Conditioning]) -> Conditioning:
    """Join batch-1 (or batch-b) Conditionings of equal frame counts along the batch."""
    fields = {}
    for name in ("prompt", "prompt_embeds", "actions", "pose", "spatial_positions"):
        values = [getattr(p, name) for p in parts]
        fields[name] = None if values[0] is None else torch.cat(values, dim=0)
    return Conditioning(**fields)


def sample_episode(cfg: PanWorldConfig, seed: int, frames: int, split: str | None = None) -> Episode:
    """The episode of `seed` with `frames` frames (rejection-sampled camera paths; deterministic by seed).

    `split`, if given, must hold `seed` (see `config.check_seed`); held-out subject classes follow the seed's
    split. Raises RuntimeError if `cfg.max_attempts` paths all miss the constraints.
    """
    if split is not None:
        check_seed(seed, split)
    split_of(seed)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng([seed, _STREAM])
    layout = sample_layout(cfg, rng, seed)
    pillars = pillar_columns(cfg, layout.pillars)
    occluded_at = occlusion_by_position(cfg, pillars)
    body = subject_sprites(cfg, layout.subject)[1][0]
    cons = revisit_constraints(cfg, frames)
    for attempt in range(1, cfg.max_attempts + 1):
        camera_x = sample_camera_path(cfg, frames, rng, occluded_at)
        _, gap, _, sink = column_labels(camera_x, cfg.frame_width, cfg.world_width, cfg.sink_frames)
        if not meets_revisit_constraints(cons, gap, sink):
            continue
        visibility = subject_visibility(cfg, camera_x, pillars, body)
        if cons.active and cons.occlusion and not occluded_between_visible(visibility):
            continue
        change, shrine_x = place_shrine(cfg, rng, camera_x, pillars, visibility, cons.change_lo,
                                        cons.change_hi)
        if cons.active and change < 0:
            continue
        size = cfg.flicker_size
        return Episode(cfg=cfg, seed=seed, layout=layout, camera_x=camera_x, shrine_x=shrine_x,
                       state_change_frame=change, flicker_on=rng.random(frames) < cfg.flicker_prob,
                       flicker_box=np.stack([rng.integers(0, cfg.frame_height - size + 1, frames),
                                             rng.integers(0, cfg.frame_width - size + 1, frames)], axis=1),
                       flicker_rgb=rng.integers(0, 256, (frames, 3)).astype(np.uint8), attempts=attempt)
    raise RuntimeError(f"PanWorld seed {seed}: no camera path of {frames} frames met the revisit constraints "
                       f"{cons} in panworld.max_attempts={cfg.max_attempts} attempts")
